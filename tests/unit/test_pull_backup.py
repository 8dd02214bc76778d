"""Pull-mode backups (events/pull.py): which extents are read, how the reading is paced, and the
backup XML of each mode. The real thing runs in tests/integration/test_backup_chains.py (full and
incrementals across migrations, restored) and the fault matrix (the set's volume full)."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from availlab.errors import BackupError, UsageError
from availlab.events import pull
from availlab.events.backup import backup
from availlab.events.backup_modes import EXPORT_BITMAP, REGISTRY, Copy

MiB = 2**20


def test_a_dirty_bitmap_reads_only_dirty_extents_merged():
    entries = [MiB, 1, MiB, 1, 2 * MiB, 0, MiB, 1]  # dirty, dirty, clean, dirty
    assert pull.wanted("qemu:dirty-bitmap:x", entries, 4 * MiB) == [(4 * MiB, 2 * MiB), (8 * MiB, MiB)]


def test_allocation_reads_all_but_zero_extents():
    hole_zero, data, zero_data = 3, 0, 2
    entries = [MiB, data, MiB, hole_zero, MiB, zero_data, MiB, data]
    assert pull.wanted("base:allocation", entries, 0) == [(0, MiB), (3 * MiB, MiB)]


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_the_pacer_keeps_the_average_rate():
    clock = FakeClock()
    p = pull.Pacer(100, clock=clock, sleep=clock.sleep)
    for _ in range(50):
        p.add(2 * MiB)  # 100 MiB, read instantly
    assert clock.t == pytest.approx(1.0)
    clock.t += 5  # a slow reader is not held back further
    p.add(2 * MiB)
    assert len(p.waits) == 50


def test_no_cap_never_sleeps():
    clock = FakeClock()
    p = pull.Pacer(0, clock=clock, sleep=clock.sleep)
    p.add(1 << 40)
    assert clock.t == 0 and not p.waits


class FakeExport:
    """An NBD source: block status from a list of (length, flags), reads of b'x'."""

    def __init__(self, context, extents, per_answer=2):
        self.context, self.extents, self.per_answer, self.reads = context, extents, per_answer, []

    def block_status(self, count, offset, cb):
        at, out = 0, []
        for length, flags in self.extents:
            if at >= offset and len(out) < 2 * self.per_answer:
                out += [length, flags]
            at += length
        cb("base:allocation" if self.context != "base:allocation" else "other", offset, [1, 0], 0)  # ignored
        cb(self.context, offset, out, 0)

    def pread(self, n, o):
        self.reads.append((o, n))
        return b"x" * n


class FakeTarget:
    def __init__(self):
        self.writes, self.flushed = [], False

    def pwrite(self, data, o):
        self.writes.append((o, len(data)))

    def flush(self):
        self.flushed = True


def test_the_copy_walks_the_whole_disk_in_answers_and_chunks():
    ctx = "qemu:dirty-bitmap:" + EXPORT_BITMAP
    src = FakeExport(ctx, [(pull.CHUNK * 2 + 4096, 1), (MiB, 0), (MiB, 0), (MiB, 1)])
    dst = FakeTarget()
    seen = []
    size = pull.CHUNK * 2 + 4096 + 3 * MiB
    out = pull._copy(src, dst, ctx, size, 0, lambda d, s: seen.append(d))
    assert dst.writes == src.reads == [(0, pull.CHUNK), (pull.CHUNK, pull.CHUNK), (2 * pull.CHUNK, 4096),
                                       (size - MiB, MiB)]
    assert out.bytes == 2 * pull.CHUNK + 4096 + MiB and out.extents == 2 and dst.flushed
    assert seen[-1] == size


def test_a_server_that_describes_nothing_fails_the_copy_rather_than_skip_data():
    ctx = "base:allocation"
    src = FakeExport(ctx, [])
    with pytest.raises(BackupError, match="no base:allocation at offset 0"):
        pull._copy(src, FakeTarget(), ctx, MiB, 0, None)


def _backup_xml(mode, parent, nbd_dir=None, scratch=Path("/h/scr.qcow2")):
    """The XML a mode gives libvirt for a copy into /s (no lab: only the paths matter)."""
    return REGISTRY[mode].xml(Copy(None, None, "sql1", None, "full", Path("/s"), parent, 0, scratch=scratch,
                                   nbd_dir=nbd_dir))


def test_pull_xml_exports_the_disk_with_a_scratch_file_and_the_parents_bitmap():
    x = ET.fromstring(_backup_xml("pull", "ck-1", Path("/tmp/n")))
    assert x.get("mode") == "pull" and x.findtext("incremental") == "ck-1"
    assert x.find("server").attrib == {"transport": "unix", "socket": "/tmp/n/nbd.sock"}
    d = x.find("disks/disk[@name='vda']")
    assert d.get("exportname") == "vda" and d.get("exportbitmap") == EXPORT_BITMAP
    assert d.find("scratch").get("file") == "/h/scr.qcow2" and d.find("target") is None
    full = ET.fromstring(_backup_xml("pull", None, Path("/n"), Path("/scr")))
    assert full.find("incremental") is None and full.find("disks/disk[@name='vda']").get("exportbitmap") is None


def test_push_xml_writes_the_set_itself():
    x = ET.fromstring(_backup_xml("push", None))
    assert x.get("mode") == "push" and x.find("server") is None
    assert x.find("disks/disk[@name='vda']/target").get("file") == "/s/vda.qcow2"


def test_an_unknown_mode_is_refused_before_the_lab_is_asked():
    with pytest.raises(UsageError, match="mode: must be one of pull, push"):
        backup(object(), "sql1", mode="pumpkin")


def test_a_set_catalogued_before_pull_mode_reads_as_push(tmp_path):
    import json

    from availlab.events.catalog import BackupSet, read_set, write_set

    d = tmp_path / "sql1-1-full"
    d.mkdir()
    for n in ("vda.qcow2", "domain.xml"):
        (d / n).write_text("x")
    write_set(d, BackupSet(id=d.name, vm="sql1", type="full", parent=None, checkpoint="ck", time=0.0,
                           consistency="application", mode="pull",
                           files=[{"name": n, "size": 1, "sha256": "0"} for n in ("vda.qcow2", "domain.xml")]))
    assert read_set(d, "primary").mode == "pull"
    data = json.loads((d / "set.json").read_text())
    del data["mode"]
    (d / "set.json").write_text(json.dumps(data))
    assert read_set(d, "primary").mode == "push"


def test_the_cli_offers_the_librarys_modes_with_its_default():
    import argparse

    from availlab import cli_backups
    from availlab.events.backup import MODES

    p = argparse.ArgumentParser()
    cli_backups.add_parsers(p.add_subparsers(), argparse.ArgumentParser)
    assert p.parse_args(["backup", "sql1"]).mode == MODES[0]
    action = next(a for a in p._subparsers._group_actions[0].choices["backup"]._actions if a.dest == "mode")
    assert tuple(action.choices) == MODES


def test_the_exports_socket_lives_under_the_host_unless_the_path_is_too_long(tmp_path):
    """Under the host's directory, `lab down` removes it with the lab; /tmp only for a path a
    unix socket cannot take (sun_path: 107 bytes)."""
    import shutil
    import tempfile

    from availlab.events.backup_modes import socket_dir
    from availlab.paths import SOCKET_PATH_MAX

    short = socket_dir(tmp_path / "h1")
    assert short.parent == tmp_path / "h1" / "nbd" and len(str(short / "nbd.sock")) <= SOCKET_PATH_MAX
    deep = tmp_path / ("x" * 60) / ("y" * 40)
    long = socket_dir(deep)
    try:
        assert long.parent == Path(tempfile.gettempdir()) and not (deep / "nbd").exists()
    finally:
        shutil.rmtree(long)
