"""Backups, DR replication and restore on the real lab: the runbook, and the refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from availlab import paths
from availlab.lab import providers as lab
from availlab.lab import state

from .conftest import assert_no_secret, assert_outcomes, clean_lab, run_runbook
from .conftest import cli as lab_cli

LAB = "ibk"
RUNBOOK = paths.project_root() / "runbooks" / "20-backup-restore.ipynb"


def cli(*args: str) -> subprocess.CompletedProcess:
    return lab_cli(LAB, *args)


@pytest.fixture(scope="module")
def dr_lab():
    try:
        with clean_lab(LAB):
            yield LAB
    finally:
        shutil.rmtree(state.lab_root(LAB), ignore_errors=True)  # the DR site outlives down: tidy it here


def test_runbook_backs_up_under_load_and_restores_every_acknowledged_write(dr_lab, figures):
    import sys

    from availlab.scenarios import steps

    steps.ensure_lab(LAB, 2)
    # the database VM and a bystander (sql2: its template is other tests' too) on the host the
    # disaster takes, created by two `vm create`
    # at once: the lab's lock gives each its own address, and both end up in the lab's state
    procs = [subprocess.Popen([sys.executable, "-m", "availlab.cli", "--lab", LAB, "vm", "create", name,
                               "--host", "h1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("sql1", "sql2")]
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-2000:]
    st = state.require_up(LAB)
    assert {"sql1", "sql2"} <= set(st.vms) and st.vms["sql1"].address != st.vms["sql2"].address
    # both restored from booted templates (one per address): what follows proves such VMs back up,
    # freeze, lose their host and restore like cold-booted ones
    assert all(st.vms[v].started_from.startswith("template ") for v in ("sql1", "sql2")), st.vms
    # issue 28, seen: `-p restore_host h9` failed only after the VM was destroyed and h1 stopped.
    # A host the lab lacks, or a typo'd name, now exits 2 before anything changes
    for bad in (("restore_host", "h9"), ("restore_hots", "h2")):
        r = cli("run", str(RUNBOOK), "-p", *bad)
        assert r.returncode == 2 and bad[0] in r.stderr, (bad, r.stdout, r.stderr[-2000:])
    assert lab.locate_vm(state.require_up(LAB), "sql1") == ("h1", "running")
    assert lab.health(state.require_up(LAB)) == []
    # an instant restore too is the runbook's default; the chain test restores instantly already
    r, run_dir = run_runbook(LAB, RUNBOOK, "between_s", "3.0", "warmup_s", "1.0", "cooldown_s", "1.0",
                             "instant_restore", "False")
    for name in ("20-backup-restore.ipynb", "history.jsonl", "events.jsonl", "results.json",
                 "report.html", "junit.xml", "sql1.pgdump"):
        assert (run_dir / name).is_file(), name
    doc, timings = assert_outcomes(r, run_dir)
    for private in ("sql1.pgdump", "results.json"):  # the database, and what the run found
        assert (run_dir / private).stat().st_mode & 0o077 == 0, private
    f = doc["figures"]
    assert f["failed_ops"] == 0 and f["info_ops"] == 0 and f["lost_writes"] == 0 and f["ops"] > 100
    rpo = next(c for c in doc["checks"] if c["name"] == "rpo")["figures"]
    assert rpo["acknowledged_before_backup"] > 0 and rpo["lost_writes"] == 0
    assert isinstance(f["rto_s"], float) and f["rto_s"] > 0
    assert len(f["freeze_windows_ms"]) == 2 and all(w is not None and w > 0 for w in f["freeze_windows_ms"])
    assert f["checksums_verified"] is True
    page = (run_dir / "report.html").read_text()
    assert f"<td data-figure='rto_s'>{f['rto_s']:g}</td>" in page
    assert "id='backups'" in page and f'data-verdict="{doc["verdict"]}"' in page
    figures["runbook_20 (backup/DR/restore)"] = (
        f"ops {f['ops']}, failed {f['failed_ops']}, lost {f['lost_writes']}, freeze windows "
        f"{f['freeze_windows_ms']} ms, max blackout {f['longest_blackout_ms']} ms, RTO {f['rto_s']} s, "
        f"RPO writes missing {f['rpo_writes_missing']}, replication {f['replication_mib_s']} MiB/s; {timings}")
    assert_no_secret(LAB, run_dir, state.lab_root(LAB) / "backups", Path(state.load(LAB).dr_dir))
    # the bystander went down with its host and is not restored: the lab forgets it, so the
    # next runbook that wants it creates it again (it used to fail on "already exists")
    assert "sql2" not in state.load(LAB).vms and lab.locate_vm(state.load(LAB), "sql2") is None
    lost = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()
            if '"host-lost"' in line]
    assert sorted(lost[0]["vms_lost"]) == ["sql1", "sql2"], lost
    sets = json.loads(cli("backups", "list", "--json").stdout)
    assert {s["site"] for s in sets} == {"primary", "dr"}
    assert all(Path(p).is_file() for s in sets for p in s["files"])


def test_corruption_missing_parent_and_duplicate_restore_are_refused(dr_lab):
    # the VM now runs where the runbook restored it; take a fresh chain of our own
    full = cli("backup", "sql1", "--copy-mib-s", "0")  # no clients to spare: uncapped, 3x faster
    assert full.returncode == 0, full.stderr[-2000:]
    full_id = full.stdout.split()[0]
    inc = cli("backup", "sql1", "--incremental")
    assert inc.returncode == 0, inc.stderr[-2000:]
    inc_id = inc.stdout.split()[0]
    primary = state.lab_root(LAB) / "backups"

    # a flipped byte at the primary site: replication refuses it, naming file and checksum
    vda = primary / inc_id / "vda.qcow2"
    raw = bytearray(vda.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    vda.write_bytes(bytes(raw))
    r = cli("replicate", inc_id)
    assert r.returncode == 1 and "checksum mismatch" in r.stderr and str(vda) in r.stderr
    raw[len(raw) // 2] ^= 0xFF
    vda.write_bytes(bytes(raw))
    assert cli("replicate", inc_id).returncode == 0

    # a flipped byte at the DR site: restore refuses before defining anything
    dr_vda = state.load(LAB).dr_dir + f"/{full_id}/vda.qcow2"
    with open(dr_vda, "r+b") as fh:
        fh.seek(4096)
        b = fh.read(1)
        fh.seek(4096)
        fh.write(bytes([b[0] ^ 0xFF]))
    r = cli("restore", inc_id, "--host", "h1", "--name", "sql9")
    assert r.returncode == 1 and "checksum mismatch" in r.stderr and dr_vda in r.stderr
    assert "sql9" not in state.load(LAB).vms
    with open(dr_vda, "r+b") as fh:
        fh.seek(4096)
        fh.write(b)

    # a missing parent is refused by name
    hidden = Path(state.load(LAB).dr_dir) / f"{full_id}"
    hidden.rename(hidden.with_name(full_id + ".away"))
    r = cli("restore", inc_id, "--host", "h1", "--name", "sql9")
    assert r.returncode == 1 and f"parent set {full_id} is missing" in r.stderr
    hidden.with_name(full_id + ".away").rename(hidden)

    # issue 28, seen: a set whose domain.xml gained a host file as a disk (and another emulator),
    # its checksum rewritten in set.json, was restored with that disk. Now the restored domain is
    # availlab's own, rendered from its template: only the VM's disk and config disk
    dr_set = Path(state.load(LAB).dr_dir) / inc_id
    xml = (dr_set / "domain.xml").read_text()
    evil = ("<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/etc/hostname'/>"
            "<target dev='vdz' bus='virtio'/></disk><emulator>/bin/sh</emulator></devices>")
    (dr_set / "domain.xml").write_text(xml.replace("</devices>", evil, 1))
    catalogue = json.loads((dr_set / "set.json").read_text())
    for f in catalogue["files"]:
        if f["name"] == "domain.xml":
            f["sha256"], f["size"] = paths.sha256_file(dr_set / "domain.xml"), (dr_set / "domain.xml").stat().st_size
    (dr_set / "set.json").write_text(json.dumps(catalogue))

    # restore once under a new name, then again: refused without --replace, done with it
    r = cli("restore", inc_id, "--host", "h1", "--name", "sql9")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "SELECT" not in r.stderr
    import xml.etree.ElementTree as ET

    from availlab.lab.providers import provider

    st = state.load(LAB)
    with provider(st).connect(st.hosts["h1"]) as hv:
        restored = ET.fromstring(hv.domain_xml("sql9"))
    sources = sorted(d.find("source").get("file") for d in restored.findall("devices/disk"))
    assert sources == sorted([st.vms["sql9"].disk, st.vms["sql9"].config_disk]), sources
    assert restored.findtext("devices/emulator") != "/bin/sh"
    r = cli("restore", inc_id, "--host", "h1", "--name", "sql9")
    assert r.returncode == 1 and "exists on h1" in r.stderr and "--replace" in r.stderr
    r = cli("restore", inc_id, "--host", "h2", "--name", "sql9", "--replace")
    assert r.returncode == 0, r.stderr[-2000:]
    assert lab.locate_vm(state.load(LAB), "sql9") == ("h2", "running")
    q = cli("sql", "sql9", "SELECT count(*) FROM availlab_kv")
    assert q.returncode == 0 and int(q.stdout.strip()) > 0


def test_a_backup_whose_copy_fails_is_never_catalogued(dr_lab):
    """The copy runs after backupBegin returns; if it then fails (here: cancelled mid-way, as a
    full disk or a dead target would), no set may appear, and the guest is not left frozen."""
    import threading
    import time as _time

    from availlab.clients.sql import run_sql
    from availlab.errors import BackupError
    from availlab.events.backup import backup
    from availlab.events.catalog import list_sets
    from availlab.lab.virt import Hypervisor
    from availlab.scenarios import steps

    steps.ensure_vm(steps.ensure_lab(LAB, 2), "sql1", "h1")
    st = state.require_up(LAB)
    host = lab.locate_vm(st, "sql1")[0]
    before = {b.id for b in list_sets(st, "primary")}
    outcome: dict = {}
    th = threading.Thread(target=lambda: outcome.update(
        result=_try(lambda: backup(st, "sql1", consistent=True))))
    th.start()
    with Hypervisor(host, st.hosts[host].uri) as hv:
        deadline = _time.monotonic() + 30
        while _time.monotonic() < deadline and not hv.job_active("sql1"):
            _time.sleep(0.005)
        _time.sleep(0.1)  # into the copy, past libvirt's own job start-up
        hv.abort_job("sql1")
    th.join(timeout=60)
    assert isinstance(outcome["result"], BackupError), outcome
    assert "failed during the copy" in str(outcome["result"])
    assert {b.id for b in list_sets(st, "primary")} == before
    assert not list((state.lab_root(LAB) / "backups").glob("*.partial"))
    run_sql(st, "sql1", "CREATE TABLE IF NOT EXISTS after_abort (x int)", timeout_s=10)  # not frozen


def test_a_pull_backup_killed_mid_copy_leaves_nothing_that_blocks_the_next_migration_or_backup(dr_lab):
    """Issue 28, seen: after `kill -9` of a running pull-mode backup, `vm migrate` failed ("cannot
    acquire state change lock (held by monitor=remoteDispatchDomainBackupBegin)") and so did the
    next backup. The next command on the VM now finds the dead backup's job record, aborts its
    job and removes its partial set and checkpoint."""
    import os
    import signal
    import sys
    import time as _time

    from availlab.lab.virt import Hypervisor
    from availlab.scenarios import steps

    steps.ensure_vm(steps.ensure_lab(LAB, 2), "sql1", "h1")
    st = state.require_up(LAB)
    host = lab.locate_vm(st, "sql1")[0]
    other = next(h for h in st.hosts if h != host)
    backups = state.lab_root(LAB) / "backups"
    proc = subprocess.Popen([sys.executable, "-m", "availlab.cli", "--lab", LAB, "backup", "sql1",
                             "--mode", "pull", "--copy-mib-s", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with Hypervisor(host, st.hosts[host].uri) as hv:
            deadline = _time.monotonic() + 60
            while _time.monotonic() < deadline and not (hv.job_active("sql1") and list(backups.glob("*.partial/.job.json"))):
                _time.sleep(0.05)
            assert hv.job_active("sql1"), proc.communicate(timeout=5)
            _time.sleep(0.5)  # into the copy
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            assert hv.job_active("sql1"), "the job ended with its reader: nothing left to recover"
            partial = [p.name for p in backups.glob("*.partial")]
            assert partial
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    r = cli("vm", "migrate", "sql1", "--to", other)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "aborted" in r.stderr + r.stdout and partial[0] in r.stderr + r.stdout, (r.stdout, r.stderr)
    assert not list(backups.glob("*.partial")), "the dead backup's partial set is left"
    r = cli("backup", "sql1", "--copy-mib-s", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    st = state.require_up(LAB)
    with Hypervisor(other, st.hosts[other].uri) as hv:
        ck = f"ck-{partial[0].removesuffix('.partial')}"
        assert ck not in hv.checkpoints("sql1"), "the dead backup's checkpoint is left on the disk"


def _try(fn):
    try:
        return fn()
    except Exception as exc:  # the test inspects what the backup raised
        return exc


def test_a_guest_frozen_by_a_harness_that_died_thaws_itself(dr_lab):
    """The harness freezes and then never thaws (killed between the two, host gone): the guest's
    freeze watchdog (lab/guest/freeze-watchdog) must thaw it, as VSS does after 10 s, so a write
    commits without anyone on the host sending a thaw."""
    import time as _time

    from availlab.clients.sql import run_sql
    from availlab.lab.virt import Hypervisor

    st = state.require_up(LAB)
    host = lab.locate_vm(st, "sql1")[0]
    with Hypervisor(host, st.hosts[host].uri) as hv:
        hv.fs_freeze("sql1")
        assert hv.agent_command("sql1", {"execute": "guest-fsfreeze-status"}) == "frozen"
    t = _time.monotonic()
    try:
        run_sql(st, "sql1", "CREATE TABLE IF NOT EXISTS after_watchdog (x int); INSERT INTO after_watchdog VALUES (1)",
                timeout_s=60)
        waited = _time.monotonic() - t
    finally:
        with Hypervisor(host, st.hosts[host].uri) as hv:
            hv.fs_thaw("sql1")  # the agent still believes it froze the guest: tell it otherwise
    console = (Path(st.shared_dir) / "logs" / "sql1.console.log").read_text(errors="replace")
    assert "availlab-freeze-watchdog: thawed / after 10 s" in console
    print(f"write committed {waited:.1f} s after a freeze nobody thawed")


def test_a_reboot_keeps_the_vm_every_acknowledged_write_and_every_backup(dr_lab, figures):
    """A reboot, simulated: every process of the lab killed, its namespaces and cgroups deleted,
    its state kept. `lab up` (here through a runbook's ensure_lab) used to take that as a reason
    to tear the lab down, VM disks and primary backups included. It must bring the lab back."""
    import os
    import signal
    import time as _time

    from availlab.clients.sql import run_sql
    from availlab.events import catalog
    from availlab.lab import cgroups, netns, sweep
    from availlab.scenarios import steps
    from availlab.vm import create as vm

    st = state.require_up(LAB)
    vms_before = sorted(st.vms)
    run_sql(st, "sql1", "CREATE TABLE before_reboot (k int PRIMARY KEY)", timeout_s=30)
    for i in range(5):  # five acknowledged commits
        run_sql(st, "sql1", f"INSERT INTO before_reboot SELECT g FROM generate_series({i * 100}, {i * 100 + 99}) g",
                timeout_s=30)
    sets_before = sorted((b.site, b.id) for b in catalog.list_sets(st))
    assert {s for s, _ in sets_before} == {"primary", "dr"}

    for pid in sweep._lab_pids(LAB, st):  # the lab's own processes, by PID
        if sweep._ours(pid, LAB):
            os.kill(pid, signal.SIGKILL)
    deadline = _time.monotonic() + 30
    while [p for p in sweep._lab_pids(LAB, st) if sweep._ours(p, LAB)] and _time.monotonic() < deadline:
        _time.sleep(0.1)
    for ns in netns.list_lab_namespaces(LAB):
        netns.remove(ns)
    cgroups.remove_lab_cgroups(LAB)
    assert lab.health(state.load(LAB)), "the simulated reboot left the lab healthy?"

    t0 = _time.monotonic()
    steps.ensure_lab(LAB, 2)
    figures["lab rebuilt after a reboot (VMs answering)"] = f"{_time.monotonic() - t0:.1f} s"
    st = state.require_up(LAB)
    assert lab.health(st) == [] and sorted(st.vms) == vms_before
    assert all(lab.locate_vm(st, name)[1] == "running" for name in st.vms)
    assert run_sql(st, "sql1", "SELECT count(*) FROM before_reboot", timeout_s=30)[0][0] == 500
    after = catalog.list_sets(st)
    assert sorted((b.site, b.id) for b in after) == sets_before
    newest_dr = max((b for b in after if b.site == "dr"), key=lambda b: b.time)
    r = cli("restore", newest_dr.id, "--host", "h1", "--name", "afterboot")
    try:
        assert r.returncode == 0, r.stderr
        assert run_sql(state.require_up(LAB), "afterboot", "SELECT 1", timeout_s=30) == [(1,)]
    finally:
        if "afterboot" in state.require_up(LAB).vms:
            vm.delete(LAB, "afterboot")
