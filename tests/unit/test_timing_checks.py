"""Every timing check on crafted histories, on both sides of its threshold, and the split of the
verdict into outcomes and timings. Integration tests only print timings (issue 11): this file is
where a timing verdict is proven right."""

import pytest

from availlab.checks import OUTCOME, SLO, TIMING, Check, Results, check_dr_run, check_dynamic, check_run, verdict_of
from availlab.scenarios.tips import rule

from .test_checker import MIG, final, keys_of, op, steady
from .test_dr_checks import scenario

MS = 1_000_000
S = 1_000_000_000


def by_name(results):
    return {c.name: c for c in results.checks}


# --- blackout (runbooks 10 and 20, soak) -----------------------------------------------------------

@pytest.mark.parametrize("allowed, valid", [(420.0, True), (419.9, False)])
def test_blackout_at_its_threshold_passes_and_just_below_fails(allowed, valid):
    h = steady(skip=(1000, 1400))  # longest gap exactly 420 ms
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=allowed))
    c = by_name(r)["blackout"]
    assert c.kind == TIMING and c.figures["longest_blackout_ms"] == 420.0 and c.valid is valid
    assert r.verdict_by_kind == {"outcome": "PASS", "timing": "PASS" if valid else "FAIL"}
    assert r.verdict == ("PASS" if valid else "FAIL")


def test_kinds_of_the_live_migration_checks():
    h = steady()
    r = check_run(h + [final(keys_of(h))], MIG, SLO())
    assert {c.name: c.kind for c in r.checks} == {
        "history": OUTCOME, "outcomes": OUTCOME, "blackout": TIMING, "lost-writes": OUTCOME,
        "latency": TIMING, "migrations": OUTCOME, "probe": TIMING, "explained": TIMING, "server": OUTCOME}


def test_a_client_that_never_completed_an_operation_is_an_outcome_not_a_timing():
    h = steady(clients=1) + op(1, 9999, 100, 200, kind="fail", sqlstate="08001", error="refused")
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=10_000, max_failed_ops=5))
    c = by_name(r)["blackout"]
    assert c.valid is False and c.kind == OUTCOME and c.figures["clients_without_ok"] == [1]
    assert r.verdict_by_kind["outcome"] == "FAIL"


def test_a_lost_write_fails_the_outcomes_whatever_the_timings():
    h = steady()
    r = check_run(h + [final(set(sorted(keys_of(h))[1:]))], MIG, SLO(max_blackout_ms=10_000))
    assert r.verdict_by_kind == {"outcome": "FAIL", "timing": "PASS"} and r.verdict == "FAIL"


def test_a_crashed_timing_check_is_unknown_among_the_timings(monkeypatch):
    from availlab.checks import checker
    from availlab.checks import migration as run_checks

    monkeypatch.setattr(run_checks, "blackout", checker(TIMING)(lambda ctx: 1 / 0))
    h = steady()
    r = check_run(h + [final(keys_of(h))], MIG, SLO())
    assert by_name(r)["blackout"].kind == TIMING
    assert r.verdict_by_kind == {"outcome": "PASS", "timing": "UNKNOWN"} and r.verdict == "UNKNOWN"


def test_verdict_by_kind_is_in_results_json_and_a_kind_without_checks_passes():
    r = Results(verdict_of([Check("x", True)]), [Check("x", True)], {})
    assert r.to_dict()["verdict_by_kind"] == {"outcome": "PASS", "timing": "PASS"}
    assert r.to_dict()["checks"][0]["kind"] == OUTCOME


# --- backup freeze blackout (runbook 20) -------------------------------------------------------------

def test_backup_blackout_is_a_timing_check_on_both_sides_of_its_slo():
    from availlab import checks as dr

    def run(slo):
        h = []
        for n in range(100):  # a write every 10 ms, none completing inside 200..450 ms (the freeze)
            if not 200 <= n * 10 + 5 <= 450:
                h += op(0, n, n * 10, n * 10 + 5)
        keys = sorted(keys_of(h))
        ev = [{"type": "backup", "kind": "full", "t_begin": 300 * MS, "set_id": "f", "consistency": "application",
               "size_bytes": 1, "duration_s": 1, "freeze_ms": 250,
               "phases": [{"phase": "frozen", "t0": 200 * MS, "t1": 450 * MS}]},
              {"type": "backup", "kind": "incremental", "t_begin": 900 * MS, "set_id": "i",
               "consistency": "application", "size_bytes": 1, "duration_s": 1, "freeze_ms": 5,
               "phases": [{"phase": "frozen", "t0": 895 * MS, "t1": 900 * MS}]},
              {"type": "restore", "t0": 2000 * MS, "t1": 2010 * MS, "rto_s": 10.0, "host": "h2"}]
        h += [{"type": "final-read", "t": 3000 * MS, "ok": True, "vm": "sql1", "keys": keys},
              {"type": "db-consistency", "t": 3000 * MS, "database": "postgresql", "table_rows": len(keys),
               "index_rows": len(keys), "integrity": None, "values_checked": len(keys), "value_mismatches": 0},
              {"type": "dump-read", "t": 3000 * MS, "ok": True, "t_dump0": 990 * MS, "keys": keys}]
        return dr.check_dr_run(h, ev, slo)

    gap = by_name(run(SLO()))["blackout"].figures["longest_blackout_ms"]
    assert gap == 260.0  # from the op ending at 195 ms to the one ending at 455 ms
    assert run(SLO(max_blackout_ms=gap)).verdict_by_kind == {"outcome": "PASS", "timing": "PASS"}
    assert run(SLO(max_blackout_ms=gap - 1)).verdict_by_kind == {"outcome": "PASS", "timing": "FAIL"}
    assert by_name(run(SLO()))["blackout"].kind == TIMING and by_name(run(SLO()))["rpo"].kind == OUTCOME


def test_dr_checks_keep_their_kinds():
    r = scenario(lambda keys: keys)
    assert {c.name: c.kind for c in r.checks} == {"history": OUTCOME, "outcomes": OUTCOME, "blackout": TIMING, "latency": TIMING,
                                                 "rpo": OUTCOME, "restore": OUTCOME, "probe": TIMING}
    assert check_dr_run([], [], SLO()).verdict_by_kind["outcome"] != "PASS"


# --- dynamic resources (runbook 30): tip latency and p95 recovery -------------------------------------

def pro_run(lag_s=6.0, during_ms=40.0, after_ms=8.0, mode="automatic", migrate=True, approve=False,
            migration_ok=True, extra_events=()):
    """Overload from 10 s; h1 crosses 60 % at 11 s, the tip fires 5 s later (sustained_s); the move
    starts lag_s after the crossing and takes 1 s."""
    h, n = [], 0
    t_move = 11 + lag_s
    for t10 in range(0, 400):  # one write every 100 ms for 40 s
        t = t10 / 10
        lat = 5.0 if t < 10 else (during_ms if (not migrate or not migration_ok or t < t_move + 1) else after_ms)
        n += 1
        h += op(0, n, int(t * 1000), int(t * 1000 + lat))
    h = [{"type": "warm", "t": 0}] + h + [final(keys_of(h))]
    ev = [{"type": "overload-start", "t": 10 * S}]
    ev += [{"type": "sample", "t": int(t * S), "hosts": {"h1": {"cpu": 95.0 if t >= 11 else 20.0},
                                                         "h2": {"cpu": 5.0}}} for t in range(0, 40)]
    ev += [{"type": "tip", "t": 16 * S, "id": 1, "time": 16 * S, "rule": "host-cpu-high", "host": "h1", "vm": "hog1",
            "action": "migrate", "target": "h2", "value": 95.0, "reason": "r"}]
    if approve:
        ev.append({"type": "tip-approved", "t": int((t_move - 0.5) * S), "tip": 1})
    if migrate:
        ev += [{"type": "migration-start", "t": int(t_move * S), "vm": "hog1", "source": "h1", "target": "h2"},
               {"type": "migration", "vm": "hog1", "source": "h1", "target": "h2", "ok": migration_ok,
                "t0": int(t_move * S), "t1": int((t_move + 1) * S), "downtime_ms": 50},
               {"type": "tip-applied", "t": int((t_move + 1) * S), "tip": 1, "ok": migration_ok}]
    ev = sorted([*ev, *extra_events], key=lambda e: e.get("t", e.get("t0", 0)))
    return check_dynamic(h, ev, SLO(), [rule(threshold=60, sustained_s=5)], mode, 1.0)


@pytest.mark.parametrize("lag_s, valid", [(7.0, True), (7.2, False)])
def test_tip_latency_at_sustained_plus_two_samples_passes_and_past_it_fails(lag_s, valid):
    r = pro_run(lag_s=lag_s)
    c = by_name(r)["tip-latency"]
    assert c.kind == TIMING and c.valid is valid and c.figures["crossing_to_migration_s"] == lag_s
    assert by_name(r)["tips"].valid is True and by_name(r)["tips"].kind == OUTCOME
    assert r.verdict_by_kind == {"outcome": "PASS", "timing": "PASS" if valid else "FAIL"}


@pytest.mark.parametrize("after_ms, valid", [(39.0, True), (40.0, False)])
def test_recovery_needs_p95_after_the_move_below_p95_during_the_overload(after_ms, valid):
    r = pro_run(during_ms=40.0, after_ms=after_ms)
    c = by_name(r)["recovery"]
    assert c.kind == TIMING and c.valid is valid
    assert r.figures["p95_during_ms"] == 40.0 and r.figures["p95_after_ms"] == after_ms
    assert r.verdict_by_kind["outcome"] == "PASS"


def test_no_move_in_automatic_mode_fails_the_outcome_and_leaves_the_timings_unknown():
    r = pro_run(migrate=False)
    assert by_name(r)["tips"].valid is False and "no migration followed" in by_name(r)["tips"].message
    assert by_name(r)["tip-latency"].valid == "unknown" and by_name(r)["recovery"].valid == "unknown"
    assert r.verdict == "FAIL" and r.verdict_by_kind == {"outcome": "FAIL", "timing": "UNKNOWN"}


def test_a_move_that_failed_fails_the_outcome():
    r = pro_run(migration_ok=False)
    assert by_name(r)["tips"].valid is False and "the migration that followed the tip failed" in by_name(r)["tips"].message
    assert r.verdict == "FAIL" and r.verdict_by_kind["outcome"] == "FAIL"


def test_a_start_vm_tip_first_does_not_hide_the_migrate_tip_that_acted():
    start_vm = {"type": "tip", "t": 12 * S, "id": 0, "time": 12 * S, "rule": "vm-cpu-high", "host": "h2",
                "vm": None, "action": "start-vm", "target": "h1", "value": 95.0, "reason": "r"}
    r = pro_run(extra_events=[start_vm])
    assert by_name(r)["tips"].valid is True, by_name(r)["tips"].message


def test_a_move_before_the_tip_is_not_the_tip_acting():
    r = pro_run(lag_s=4.0)  # starts at 15 s, the tip fired at 16 s
    assert by_name(r)["tips"].valid is False and by_name(r)["tip-latency"].valid == "unknown"


def test_no_operation_after_the_move_leaves_recovery_unknown():
    r = pro_run(lag_s=33.0)  # the move ends at 45 s: nothing is recorded after it
    assert by_name(r)["recovery"].valid == "unknown"


def test_manual_mode_without_approval_has_nothing_to_time():
    r = pro_run(mode="manual", migrate=False)
    assert r.verdict == "PASS", [(c.name, c.valid, c.message) for c in r.checks]
    assert by_name(r)["tip-latency"].valid is True and by_name(r)["recovery"].valid is True


def test_an_approved_move_that_failed_fails_the_outcome():
    r = pro_run(mode="manual", approve=True, migration_ok=False)
    assert by_name(r)["tips"].valid is False and "did not complete" in by_name(r)["tips"].message


def test_manual_mode_moving_before_approval_fails_the_outcome():
    assert by_name(pro_run(mode="manual"))["tips"].valid is False
    assert by_name(pro_run(mode="manual", approve=True))["tips"].valid is True


# --- the run's exit code ---------------------------------------------------------------------------

@pytest.mark.parametrize("verdict, ok, error, code", [
    ("PASS", True, "", 0),
    ("FAIL", False, "VerdictError: verdict FAIL (outcomes PASS, timings FAIL): blackout", 1),
    ("UNKNOWN", False, "VerdictError: verdict UNKNOWN", 3),
    ("PASS", False, "LabError: h1: libvirtd did not restart", 4),  # crashed after its report: the harness
    ("INCOMPLETE", False, "interrupted", 130),
    ("PASS", False, "interrupted", 130),  # Ctrl-C after the report, during a repair step
    (None, False, "UsageError: plan: unknown plan", 2),
    (None, False, "KeyError: 'x'", 4),  # no verdict: the harness broke, not the system under test
    (None, True, "", 0),
])
def test_exit_code_is_the_verdict_unless_the_run_failed_after_it(tmp_path, verdict, ok, error, code):
    import json

    from availlab.scenarios.runbook import RunResult

    if verdict:
        (tmp_path / "results.json").write_text(json.dumps(
            {"verdict": verdict, "verdict_by_kind": {"outcome": "PASS", "timing": "PASS"}}))
    r = RunResult("10-live-migration", tmp_path, tmp_path / "nb.ipynb", ok, error)
    assert r.exit_code == code
    assert r.crashed_after_verdict is (code == 4 and bool(verdict) and not error.startswith("VerdictError"))


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_interrupts_a_run_even_when_sigint_started_ignored(sig):
    """A job started with `&` by a script inherits SIGINT ignored; `kill -INT` (or SIGTERM, from a
    CI timeout) must still end the run, and only once the running cell has finished."""
    import os
    import signal
    import time

    from availlab.interrupt import run_interruptibly

    finished = []
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        def cell(km_class):
            assert km_class.__name__ == "Recording"  # the kernel is signalled by its own handle
            os.kill(os.getpid(), getattr(signal, sig))
            time.sleep(0.5)
            finished.append(True)

        with pytest.raises(KeyboardInterrupt):
            run_interruptibly(cell)
        assert finished == [True], "returned before the cell had finished"
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN, "the caller's disposition is restored"
        with pytest.raises(ZeroDivisionError):
            run_interruptibly(lambda _km: 1 / 0)  # the worker's own failure reaches the caller
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_two_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    from availlab.paths import new_run_dir, point_latest

    made = [new_run_dir(tmp_path / "10-live-migration") for _ in range(3)]
    assert len(set(made)) == 3 and all(d.is_dir() for d in made)
    for d in made:
        point_latest(d)
    latest = tmp_path / "10-live-migration" / "latest"  # the newest, for CI and for people
    assert latest.is_symlink() and latest.resolve() == made[-1].resolve()
    assert sorted(p.name for p in latest.parent.iterdir()) == sorted([*(d.name for d in made), "latest"])
    assert {d.name.split("-")[-1] for d in made[1:]} <= {"2", "3"} or made[0].name != made[1].name
