"""An incremental chain survives live migration: full on h1 -> migrate -> incremental on h2 ->
migrate -> incremental on h1 -> differential (since the full). Each set restores to a VM holding
every write committed before its backup and none after. Before, the first incremental after a
migration was refused ("take a full backup"): the checkpoint's metadata stayed in the source
host's libvirtd while its bitmap moved with the disk."""

from __future__ import annotations

import shutil

import pytest

from availlab.lab import state

from .conftest import clean_lab

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

    steps.ensure_vm(steps.ensure_lab(LAB, 2), "sql1", "h1")
    st = state.require_up(LAB)
    run_sql(st, "sql1", "CREATE TABLE w (k int PRIMARY KEY)", timeout_s=30)

    def write(a: int) -> None:
        run_sql(st, "sql1", f"INSERT INTO w SELECT g FROM generate_series({a}, {a + 99}) g", timeout_s=30)

    write(0)
    full = backup(st, "sql1")
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

    for bset, name, rows in ((inc1, "rinc1", 300), (inc2, "rinc2", 500), (diff, "rdiff", 600)):
        restore(st, bset.id, "h2", name=name, site="primary")
        try:
            got = run_sql(state.require_up(LAB), name, "SELECT count(*), min(k), max(k) FROM w", timeout_s=30)
            assert got == [(rows, 0, rows - 1)], (bset.id, got)
        finally:
            vm.delete(LAB, name)
