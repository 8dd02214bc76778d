"""An incremental chain survives live migration: full on h1 -> migrate -> incremental on h2 ->
migrate -> incremental on h1 -> differential (since the full). The last incremental restores, on a
third host, instantly (booted from the set, then moved off it), to a VM holding every write
committed before its backup and none after. Then retention prunes the real site. Before, the first incremental after a
migration was refused ("take a full backup"): the checkpoint's metadata stayed in the source
host's libvirtd while its bitmap moved with the disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from availlab.lab import state

from .conftest import clean_lab, cli

pytestmark = pytest.mark.integration
LAB = "ichn"


@pytest.fixture
def chain_lab():
    try:
        with clean_lab(LAB):
            yield LAB
    finally:
        shutil.rmtree(state.lab_root(LAB), ignore_errors=True)  # the DR site outlives down


def test_a_chain_across_two_migrations_restores_every_write_before_each_backup(chain_lab, figures):
    from availlab.clients.sql import run_sql
    from availlab.events import checkpoints
    from availlab.events.backup import backup
    from availlab.events.migration import live_migrate
    from availlab.events.restore import restore
    from availlab.scenarios import steps
    from availlab.vm import create as vm

    steps.ensure_vm(steps.ensure_lab(LAB, 3), "sql1", "h1")  # h3: restores, on a host that took no backup
    st = state.require_up(LAB)
    run_sql(st, "sql1", "CREATE TABLE w (k int PRIMARY KEY)", timeout_s=30)

    def write(a: int) -> None:
        run_sql(st, "sql1", f"INSERT INTO w SELECT g FROM generate_series({a}, {a + 99}) g", timeout_s=30)

    write(0)
    full = backup(st, "sql1", copy_mib_s=0)  # no clients here to spare: the uncapped copy, 3x faster
    write(100)
    assert live_migrate(st, "sql1", "h2").ok
    write(200)
    inc1 = backup(st, "sql1", incremental=True)
    write(300)
    assert live_migrate(st, "sql1", "h1").ok
    write(400)
    inc2 = backup(st, "sql1", incremental=True)
    write(500)
    diff = backup(st, "sql1", differential=True)
    write(600)  # after every backup: in no restore
    assert (full.source_host, inc1.source_host, inc2.source_host) == ("h1", "h2", "h1")
    assert (inc1.parent, inc2.parent, diff.parent, diff.type) == (full.id, inc1.id, full.id, "differential")
    assert [n for n, _ in checkpoints.kept(st, "sql1")] == [b.checkpoint for b in (full, inc1, inc2, diff)]
    figures["backup chain across 2 migrations (MiB: full, inc h2, inc h1, diff)"] = ", ".join(
        f"{b.size_bytes / 2**20:.1f}" for b in (full, inc1, inc2, diff))

    # the second incremental, whose chain crosses both migrations, restored instantly (the first's
    # chain is inside it; a chain restored in full: runbook 20's test, and the differential's
    # chain is checked by prune below)
    for bset, name, rows in ((inc2, "rinc2", 500),):
        instant = {"instant": True, "move_off": False} if name == "rinc2" else {}  # moved off below
        r = restore(st, bset.id, "h3", name=name, site="primary", **instant)
        try:
            got = run_sql(state.require_up(LAB), name, "SELECT count(*), min(k), max(k) FROM w", timeout_s=30)
            assert got == [(rows, 0, rows - 1)], (bset.id, got)
            if r.mode == "instant":
                instant_moves_off(r, (full, inc1, inc2), figures)
        finally:
            vm.delete(LAB, name)
    prune_keeps_what_the_kept_sets_build_on(full, inc1, inc2, diff)


def prune_keeps_what_the_kept_sets_build_on(full, inc1, inc2, diff):
    """Retention on the real primary site, as a user runs it: the newest set (the differential)
    keeps its full; the incrementals go, their checkpoints with them where sql1 runs; the next
    incremental builds on the kept differential."""
    from availlab.lab import providers

    dry = cli(LAB, "backups", "prune", "--site", "primary", "--keep", "1", "--json")
    assert dry.returncode == 0, dry.stderr[-2000:]
    plan = json.loads(dry.stdout)
    assert plan["applied"] is False and sorted(plan["removed"]) == sorted([inc1.id, inc2.id])
    assert sorted(plan["kept"]) == sorted([full.id, diff.id])
    assert all(Path(b.directory).is_dir() for b in (inc1, inc2))  # a dry run removes nothing
    done = cli(LAB, "backups", "prune", "--site", "primary", "--keep", "1", "--apply", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["applied"] is True, done.stderr[-2000:]
    assert not any(Path(b.directory).exists() for b in (inc1, inc2))
    assert all((Path(b.directory) / "set.json").is_file() for b in (full, diff))
    st = state.require_up(LAB)
    with providers.provider(st).connect(st.hosts[providers.running_host(st, "sql1")]) as hv:
        assert set(hv.checkpoints("sql1")) == {full.checkpoint, diff.checkpoint}
    nxt = cli(LAB, "backup", "sql1", "--incremental")
    assert nxt.returncode == 0, nxt.stderr[-2000:]
    listed = {s["id"]: s for s in json.loads(cli(LAB, "backups", "list", "--json").stdout)}
    assert listed[nxt.stdout.split()[0]]["parent"] == diff.id


def instant_moves_off(r, chain, figures):
    """The VM booted from the chain; prune keeps what it reads; once moved off it needs none of
    it: with the sets gone it migrates (its disk opened afresh on the other host) and answers."""
    from availlab.clients.sql import run_sql
    from availlab.events import instant, retention
    from availlab.events.catalog import list_sets
    from availlab.events.migration import live_migrate

    st = state.require_up(LAB)
    sets = list_sets(st, "primary")
    assert instant.in_use(st, sets) == {b.id for b in chain}
    assert not {b.id for b in chain} & {b.id for b in retention.prune(st, "primary", 1).removed}
    t0 = time.monotonic()
    instant.move_off(st, r.host, r.name)
    moved_s = time.monotonic() - t0
    assert instant.in_use(st, sets) == set()
    disk = subprocess.run(["qemu-img", "info", "-U", "--output=json", r.disk], capture_output=True, text=True)
    assert disk.returncode == 0 and "backing-filename" not in json.loads(disk.stdout), disk.stdout
    for b in chain:
        Path(b.directory).rename(b.directory + ".away")
    try:
        assert live_migrate(st, r.name, "h1").ok
        got = run_sql(state.require_up(LAB), r.name, "SELECT count(*) FROM w", timeout_s=30)
        assert got == [(500,)], got
    finally:
        for b in chain:
            Path(b.directory + ".away").rename(b.directory)
    figures["instant restore (RTO s, move-off s)"] = f"{r.rto_s}, {moved_s:.1f}"
