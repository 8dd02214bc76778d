"""RPO and restore checks on crafted histories."""

from availlab.checks import SLO, check_dr_run

MS = 1_000_000


def write(client, n, t0, t1, kind="ok"):
    key = f"r:{client}:{n}"
    return [{"type": "invoke", "client": client, "op": n, "f": "write", "key": key, "t": t0 * MS},
            {"type": kind, "client": client, "op": n, "f": "write", "key": key, "t": t1 * MS,
             "latency_ms": float(t1 - t0)}]


def sound(**spoil):
    """The answers of a sound restored MariaDB database (scenarios.dr.verify_restore), `spoil` changed."""
    return {"type": "db-consistency", "t": 3000 * MS, "database": "mariadb", "table_rows": 100, "index_rows": 100,
            "integrity": [["availlab.availlab_kv", "check", "status", "OK"]], "values_checked": 100,
            "value_mismatches": 0, "value_mismatch_keys": [], **spoil}


def scenario(restored_keys, dump_keys=None, instant=None, extra_events=(), consistency=None):
    h = []
    for n in range(100):
        h += write(0, n, n * 10, n * 10 + 5)
    keys = [f"r:0:{n}" for n in range(100)]
    ev = [{"type": "backup", "kind": "full", "t_begin": 100 * MS, "set_id": "f", "consistency": "application",
           "size_bytes": 1, "duration_s": 1, "freeze_ms": 5,
           "phases": [{"phase": "frozen", "t0": 95 * MS, "t1": 100 * MS}]},
          {"type": "backup", "kind": "incremental", "t_begin": 500 * MS, "set_id": "i",
           "consistency": "application", "size_bytes": 1, "duration_s": 1, "freeze_ms": 5,
           "phases": [{"phase": "frozen", "t0": 495 * MS, "t1": 500 * MS}]},
          {"type": "replication", "mib_s": 100.0},
          {"type": "restore", "t0": 2000 * MS, "t1": 2010 * MS, "rto_s": 10.0, "host": "h2"}]
    h += [{"type": "final-read", "t": 3000 * MS, "ok": True, "vm": "sql1", "keys": restored_keys(keys)},
          consistency if consistency is not None else sound(),
          {"type": "dump-read", "t": 3000 * MS, "ok": True, "t_dump0": 600 * MS,
           "keys": (dump_keys or (lambda k: k))(keys)}]
    if instant is not None:  # an instant restore beside the full one; None: the run made none
        ev.append({"type": "restore", "mode": "instant", "t0": 3100 * MS, "t1": 3200 * MS, "rto_s": 4.0,
                   "host": "h2", "move_off_s": 1.5})
        if instant != "not compared":
            h.append({"type": "instant-read", "t": 3300 * MS, "ok": instant == "same", "vm": "sql1-instant"})
    return check_dr_run(h, [*ev, *extra_events], SLO())


def test_writes_after_the_backup_point_are_the_rpo_not_a_failure():
    r = scenario(lambda keys: keys[:50])  # keys written before t=500 ms were restored
    assert r.verdict == "PASS", [(c.name, c.message) for c in r.checks]
    assert r.figures["rpo_writes_missing"] == 50 and r.figures["lost_writes"] == 0
    assert r.figures["rto_s"] == 10.0 and r.figures["freeze_windows_ms"] == [5, 5]
    # each freeze's client gap, from the blackout check's per-window figure (a gap over 95-100 ms:
    # the write completing at 95 ms to the next at 105 ms)
    gaps = r.figures["freeze_blackout_ms"]
    assert len(gaps) == 2 and all(g is not None and g >= 5 for g in gaps), gaps


def test_a_write_acknowledged_before_the_backup_point_missing_fails():
    r = scenario(lambda keys: keys[:10] + keys[11:50])
    assert r.verdict == "FAIL" and r.figures["lost_writes"] == 1


def test_a_dump_missing_acknowledged_writes_fails_the_restore_check():
    r = scenario(lambda keys: keys[:50], dump_keys=lambda keys: keys[:30])
    restore = next(c for c in r.checks if c.name == "restore")
    assert restore.valid is False and "pg_dump restore misses" in restore.message
    assert restore.figures["dump_tool"] == "pg_dump"


def test_an_instant_restore_beside_reports_both_rtos_and_must_hold_the_same_rows():
    r = scenario(lambda keys: keys[:50], instant="same")
    assert r.verdict == "PASS", [(c.name, c.message) for c in r.checks]
    # the full restore's RTO stays the headline: the instant one comes after it, in the same events
    assert (r.figures["rto_s"], r.figures["rto_instant_s"], r.figures["move_off_s"]) == (10.0, 4.0, 1.5)
    for bad, why in (("differs", "rows differ"), ("not compared", "were not compared")):
        restore = next(c for c in scenario(lambda keys: keys[:50], instant=bad).checks if c.name == "restore")
        assert restore.valid is False and why in restore.message


def test_a_run_without_an_instant_restore_says_so_with_none():
    r = scenario(lambda keys: keys[:50])
    assert r.figures["rto_instant_s"] is None and r.figures["move_off_s"] is None


def test_the_rpo_in_seconds_runs_from_the_backup_point_to_the_disaster_or_the_drill():
    r = scenario(lambda keys: keys[:50])  # no host-lost or drill event: the restore's start
    assert r.figures["rpo_s"] == 1.5 and r.figures["drill"] is False
    ev = [{"type": "drill", "t": 700 * MS, "vm": "sql1", "host": "h1"}]
    r = scenario(lambda keys: keys[:50], extra_events=ev)
    assert r.figures["rpo_s"] == 0.2 and r.figures["drill"] is True


# --- every restore check can fail (issue 27, item 4): corrupted answers, fed one at a time ---------

import pytest  # noqa: E402


@pytest.mark.parametrize("spoiled, says", [
    (sound(index_rows=99), "table and index disagree (100 rows against 99)"),
    (sound(integrity=[["availlab.availlab_kv", "check", "error", "Index availlab_kv_run is corrupted"],
                      ["availlab.availlab_kv", "check", "error", "Corrupt"]]), "Index availlab_kv_run is corrupted"),
    (sound(integrity=[]), "CHECK TABLE did not end in OK"),
    (sound(value_mismatches=2, value_mismatch_keys=["r:0:7", "r:0:9"]), "2 restored rows hold a value"),
    (sound(values_checked=0), "no restored row's value was checked"),
    (sound(table_rows=None), "counts were not recorded"),
    ({}, "no consistency check"),
])
def test_a_damaged_restored_database_fails_the_restore_check(spoiled, says):
    r = scenario(lambda keys: keys[:50], consistency=spoiled or {"type": "nothing"})
    restore = next(c for c in r.checks if c.name == "restore")
    assert restore.valid is False and says in restore.message, restore.message
    assert r.verdict == "FAIL"


def test_postgresql_has_no_integrity_check_to_answer_and_passes_on_its_counts():
    r = scenario(lambda keys: keys[:50], consistency=sound(database="postgresql", integrity=None))
    assert r.verdict == "PASS", [(c.name, c.message) for c in r.checks]
