import pytest

from availlab.errors import UsageError
from availlab.events.phases import migration_phases
from availlab.scenarios.plans import make_plan

HOSTS = ["h1", "h2", "h3"]


def moves(plan):
    return [(m.vm, m.source, m.target) for m in plan]


def test_ping_pong_alternates():
    p = make_plan("ping-pong", {"sql1": "h1"}, HOSTS, "sql1", migrations=3, target="h3")
    assert moves(p) == [("sql1", "h1", "h3"), ("sql1", "h3", "h1"), ("sql1", "h1", "h3")]


def test_round_robin_visits_every_host():
    p = make_plan("round-robin", {"sql1": "h2"}, HOSTS, "sql1", migrations=4)
    assert moves(p) == [("sql1", "h2", "h3"), ("sql1", "h3", "h1"), ("sql1", "h1", "h2"), ("sql1", "h2", "h3")]


def test_single_defaults_to_the_next_host():
    assert moves(make_plan("single", {"sql1": "h3"}, HOSTS, "sql1")) == [("sql1", "h3", "h1")]


def test_drain_shows_the_host_drains_moves_holds_and_returns():
    """Each VM to the least-loaded other host, as the host drain (events.drain) places them."""
    p = make_plan("drain", {"a": "h1", "b": "h1", "c": "h2"}, HOSTS, "a", hold_s=7, settle_s=2)
    assert moves(p) == [("a", "h1", "h3"), ("b", "h1", "h2"), ("a", "h3", "h1"), ("b", "h2", "h1")]
    assert p[1].hold_s == 7 and "hold" in p[1].note and p[3].hold_s == 2


def test_a_drain_plan_runs_as_the_host_drain_and_its_resume():
    from availlab.events.ops import DrainHost, Migrate, ResumeHost, Wait

    drain = make_plan("drain", {"a": "h1", "b": "h1"}, HOSTS, "a", hold_s=7, settle_s=2).nemeses(None)
    assert drain == [DrainHost("h1"), Wait(7), ResumeHost("h1"), Wait(2)]
    pong = make_plan("ping-pong", {"a": "h1"}, HOSTS, "a", migrations=2, target="h2", settle_s=1).nemeses(None)
    assert [(n.vm, n.target, n.hold_s) for n in pong if isinstance(n, Migrate)] == [("a", "h2", 1), ("a", "h1", 1)]


@pytest.mark.parametrize("kind, kw, msg", [
    ("teleport", {}, "plan: unknown plan 'teleport'"),
    ("single", {"target": "h1"}, "target: sql1 already runs on h1"),
    ("single", {"target": "h9"}, "target: unknown host 'h9'"),
    ("ping-pong", {"migrations": 0}, "migrations: must be at least 1"),
    ("drain", {"host": "h3"}, "host: no VM runs on h3"),
])
def test_impossible_plans_name_the_field(kind, kw, msg):
    with pytest.raises(UsageError, match=msg):
        make_plan(kind, {"sql1": "h1"}, HOSTS, "sql1", **kw)


def test_one_host_cannot_migrate_or_drain():
    for kind in ("single", "drain"):
        with pytest.raises(UsageError, match="needs at least 2 hosts"):
            make_plan(kind, {"sql1": "h1"}, ["h1"], "sql1")


def test_phases_from_events():
    ph = migration_phases(0, 1000, [(1, 100), (2, 500), (3, 600)], suspended=700, resumed=780)
    assert [(p["phase"], p["t0"], p["t1"]) for p in ph] == [
        ("prepare", 0, 100), ("initial copy", 100, 500), ("dirty-page iterations", 500, 700),
        ("paused", 700, 780), ("resumed on target", 780, 1000), ("announced", 780, 780)]


def test_phases_without_iteration_events_still_show_the_switchover():
    ph = migration_phases(0, 1000, [], suspended=700, resumed=780)
    assert [p["phase"] for p in ph] == ["prepare", "paused", "resumed on target", "announced"]


def test_a_postcopy_migration_has_its_post_copy_phase_from_resume_to_the_end():
    ph = migration_phases(0, 1000, [(1, 100)], suspended=400, resumed=450, postcopy_at=390)
    spans = [(p["phase"], p["t0"], p["t1"]) for p in ph]
    assert ("post-copy", 450, 1000) in spans and "resumed on target" not in [p[0] for p in spans]  # no overlap
    assert "post-copy" not in [p["phase"] for p in migration_phases(0, 1000, [(1, 100)], 400, 450)]


def test_postcopy_figures_come_from_the_samples_taken_while_the_source_answered():
    from availlab.events.migration import MigrationRecord, postcopy_figures

    rec = MigrationRecord("sql1", "h1", "h2", 0, 3_000_000_000, True)
    rec.samples = [{"t": 1, "memory_processed": 64 * 2**20, "memory_postcopy_requests": 0},
                   {"t": 2, "memory_processed": 200 * 2**20, "memory_postcopy_requests": 37}]
    f = postcopy_figures(rec, 1_200_000_000, 1_300_000_000)
    assert f == {"switch_after_ms": 1200.0, "pages_requested": 37, "phase_ms": 1700.0,
                 "sent_mib_at_last_sample": 200.0}
    rec.samples = [{"t": 1, "memory_processed": 2**20}]  # a libvirt that gives no count: unknown, not 0
    assert postcopy_figures(rec, 1_200_000_000, None)["pages_requested"] is None


def test_a_postcopy_row_in_results_takes_its_figures_from_the_last_sample():
    from availlab.checks.core import migration_rows

    m = {"vm": "sql1", "source": "h1", "target": "h2", "ok": True, "downtime_ms": 64.9, "stats": {},
         "downtime_source": "lifecycle events", "postcopy": {"pages_requested": 14},
         "samples": [{"memory_iteration": 1, "memory_processed": 10 * 2**20},
                     {"memory_iteration": 2, "memory_processed": 48 * 2**20}]}
    [row] = migration_rows([m], [120.0])
    assert (row["iterations"], row["transferred_mib"], row["downtime_source"]) == (2, 48.0, "lifecycle events")
    assert row["postcopy"] == {"pages_requested": 14} and row["client_blackout_ms"] == 120.0
    pre = migration_rows([{**m, "stats": {"memory_iteration": 3, "memory_processed": 2**20}, "postcopy": {},
                           "downtime_source": "libvirt"}], [])
    assert (pre[0]["iterations"], pre[0]["transferred_mib"]) == (3, 1.0) and "postcopy" not in pre[0]
