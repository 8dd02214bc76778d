"""The blackout probe's figures on crafted histories: its resolution, the noise floor, its gap per
migration, and each pause's blackout cut in three with the TCP retransmissions beside it."""

from availlab.checks import SLO, TIMING, check_dr_run, check_run
from availlab.clients.probe import tcp_counters
from availlab.report import render_html

from .test_checker import final, keys_of, steady

MS = 1_000_000


def probes(until_ms=2000, every_ms=5, skip=None, start_ms=0):
    """A probe completing every `every_ms`; nothing completes in `skip` = (from_ms, to_ms)."""
    out = [{"type": "probe-start", "t": start_ms * MS, "interval_ms": every_ms, "sql": "SELECT 1"}]
    for t in range(start_ms, until_ms, every_ms):
        if skip and skip[0] < t < skip[1]:
            continue
        out.append({"type": "probe", "t0": (t - 1) * MS, "t": t * MS, "ok": True})
    return out


def tcp(t_ms, retrans, timeouts=0):
    return {"type": "tcp", "t": t_ms * MS, "retrans_segs": retrans, "rto_timeouts": timeouts, "loss_probes": 0}


# the pause (lifecycle events) is 1000 -> 1080 ms; libvirt says 70 ms
MIG = [{"type": "migration", "vm": "sql1", "source": "h1", "target": "h2", "ok": True, "t0": 500 * MS,
        "t1": 1500 * MS, "downtime_ms": 70, "stats": {"downtime": 70, "downtime_net": 66},
        "phases": [{"phase": "paused", "t0": 1000 * MS, "t1": 1080 * MS}]}]


def run(h, events=MIG):
    h = h + [{"type": "warm", "t": 100 * MS}]
    return check_run(h + [final(keys_of(h))], events, SLO())


def by(r):
    return {c.name: c for c in r.checks}


def test_resolution_is_the_probes_spacing_outside_events_and_the_floor_its_longest_gap_there():
    """A 40 ms hiccup before the migration is the noise floor; one during the migration or in the
    500 ms after it is not a quiet moment and counts for neither."""
    h = steady() + probes(skip=(200, 240))
    r = run(h)
    f = by(r)["probe"].figures
    assert by(r)["probe"].kind == TIMING and by(r)["probe"].valid is True
    assert f["blackout_resolution_ms"] == 5.0 and f["noise_floor_ms"] == 40.0
    assert r.figures["blackout_resolution_ms"] == 5.0 and r.figures["noise_floor_ms"] == 40.0
    assert f["probes"] == len([x for x in h if x["type"] == "probe"]) and f["probe_failures"] == 0
    after = run(steady() + probes(skip=(1800, 1840)))
    assert by(after)["probe"].figures["noise_floor_ms"] == 5.0


def test_a_whole_backup_is_an_event_not_only_its_freeze():
    """Runbook 20 judges the freeze windows, but the probe runs fast for the whole backup: a gap
    while the set is copied is no quiet moment."""
    ev = [{"type": "backup", "kind": "full", "set_id": "f", "consistency": "application", "size_bytes": 1,
           "duration_s": 1, "freeze_ms": 50, "t0": 300 * MS, "t1": 1200 * MS,
           "phases": [{"phase": "frozen", "t0": 400 * MS, "t1": 450 * MS}]}]
    f = check_dr_run(steady() + probes(skip=(900, 1000)), ev, SLO()).figures
    assert f["noise_floor_ms"] == 5.0 and f["freeze_probe_blackout_ms"] == [5.0]


def test_the_probe_gap_inside_a_migration_is_its_blackout_at_that_resolution():
    h = steady() + probes(skip=(990, 1200))
    r = run(h)
    row = r.figures["migrations"][0]
    assert row["probe_blackout_ms"] == 210.0 and r.figures["probe_max_blackout_ms"] == 210.0
    assert r.figures["noise_floor_ms"] == 5.0  # nothing longer outside the migration


def test_each_pause_is_cut_in_three_on_one_clock_with_tcp_beside_it():
    # last completion 990 ms, pause 1000 -> 1080, first completion 1200: 10 + 80 + 120 = 210
    h = steady() + probes(skip=(990, 1200)) + [tcp(450, 10, 1), tcp(1550, 14, 2)]
    e = run(h).figures["migrations"][0]["blackout_explained"]
    assert (e["before_pause_ms"], e["paused_ms"], e["after_resume_ms"], e["blackout_ms"]) == (10.0, 80.0, 120.0, 210.0)
    assert e["before_pause_ms"] + e["paused_ms"] + e["after_resume_ms"] == e["blackout_ms"]
    assert e["libvirt_downtime_ms"] == 70 and e["downtime_net_ms"] == 66 and e["source"] == "probe"
    assert e["tcp"] == {"retrans_segs": 4, "rto_timeouts": 1, "loss_probes": 0}


def test_a_resume_seen_after_the_first_completion_leaves_nothing_after_resume():
    """Lifecycle events arrive a few ms late: the parts still add up to the gap, none negative."""
    h = steady() + probes(skip=(990, 1070))
    e = run(h).figures["migrations"][0]["blackout_explained"]
    assert e["after_resume_ms"] == 0.0 and e["paused_ms"] == 70.0
    assert e["before_pause_ms"] + e["paused_ms"] == e["blackout_ms"] == 80.0


def test_without_a_probe_the_clients_completions_explain_the_pause_and_no_resolution_is_claimed():
    h = steady(skip=(990, 1200))
    r = run(h)
    e = r.figures["migrations"][0]["blackout_explained"]
    assert e["source"] == "clients" and e["tcp"] is None
    assert r.figures["blackout_resolution_ms"] is None and by(r)["probe"].valid is True


def test_a_failed_migration_or_one_without_a_recorded_pause_is_not_explained():
    failed = [{**MIG[0], "ok": False}]
    nopause = [{**MIG[0], "phases": []}]
    for events in (failed, nopause):
        r = run(steady() + probes(), events)
        assert r.figures["migrations"][0]["blackout_explained"] is None
        assert by(r)["explained"].valid is True and "#1 not explained" in by(r)["explained"].message


def test_a_probe_that_never_answered_says_so_but_never_changes_the_verdict():
    h = steady() + [{"type": "probe-start", "t": 0, "interval_ms": 5},
                    {"type": "probe", "t0": 1, "t": 5 * MS, "ok": False, "error": "refused"}]
    r = run(h)
    c = by(r)["probe"]
    assert c.valid is True and c.figures["probe_failures"] == 1 and "no resolution to state" in c.message
    assert r.verdict == "PASS" and r.figures["blackout_resolution_ms"] is None


def test_fast_spans_end_at_a_stop_and_at_a_killed_probes_last_record():
    from availlab.checks.probe import fast_spans

    first = [{"type": "probe-start", "t": 0}, mode(10, True), {"type": "probe", "t": 50 * MS, "ok": True},
             {"type": "probe-stop", "t": 60 * MS}]
    killed = [{"type": "probe-start", "t": 1000 * MS}, mode(1010, True), {"type": "probe", "t": 1100 * MS, "ok": True}]
    again = [{"type": "probe-start", "t": 5000 * MS}, mode(5010, False)]
    assert fast_spans(first + killed + again) == [(10 * MS, 60 * MS), (1010 * MS, 1100 * MS)]
    assert fast_spans(first + killed) == [(10 * MS, 60 * MS), (1010 * MS, 1100 * MS)]


def test_backups_give_the_probe_gap_per_freeze():
    ev = [{"type": "backup", "kind": "full", "set_id": "f", "consistency": "application", "size_bytes": 1,
           "duration_s": 1, "freeze_ms": 50, "phases": [{"phase": "frozen", "t0": 1000 * MS, "t1": 1050 * MS}]}]
    f = check_dr_run(steady() + probes(skip=(990, 1100)), ev, SLO()).figures
    assert f["freeze_probe_blackout_ms"] == [110.0]


def test_tcp_counters_are_read_from_the_kernels_snmp_and_netstat_formats():
    snmp = ("Ip: Forwarding DefaultTTL\nIp: 2 64\n"
            "Tcp: RtoAlgorithm RtoMin RetransSegs InErrs\nTcp: 1 200 17 0\n")
    netstat = "TcpExt: SyncookiesSent TCPTimeouts TCPLossProbes\nTcpExt: 0 3 9\n"
    assert tcp_counters([snmp, netstat]) == {"retrans_segs": 17, "rto_timeouts": 3, "loss_probes": 9}
    assert tcp_counters(["", "garbage"]) == {}


def test_the_report_draws_the_explained_section_only_when_there_is_something_to_explain():
    doc = {"verdict": "PASS", "runbook": "10-live-migration", "checks": [], "figures": {
        "migrations": [{"vm": "v", "source": "a", "target": "b", "ok": True, "blackout_explained": {
            "source": "probe", "blackout_ms": 215.0, "before_pause_ms": 15.0, "paused_ms": 80.0,
            "after_resume_ms": 120.0, "libvirt_downtime_ms": 70, "downtime_net_ms": 66,
            "tcp": {"retrans_segs": 4, "rto_timeouts": 1}}}]}}
    page = render_html(doc, "T", "H", [], explained_png="E")
    assert "id='explained'" in page and "<td>120</td>" in page and "data-explained='0'" in page
    assert "id='explained'" not in render_html(doc, "T", "H", [])


def test_a_post_copy_phase_gives_the_clients_latency_inside_it_the_brownout():
    pc = [{**MIG[0], "phases": [{"phase": "paused", "t0": 1000 * MS, "t1": 1040 * MS},
                                {"phase": "post-copy", "t0": 1040 * MS, "t1": 1400 * MS}]}]
    h = steady(step_ms=20)
    for r in h:  # operations started inside the post-copy phase take 50 ms instead of 10
        if r["type"] == "ok" and 1040 * MS <= r["t0"] <= 1400 * MS:
            r["latency_ms"] = 50.0
    r = run(h, pc)
    b = r.figures["migrations"][0]["postcopy_brownout"]
    assert b["phase_ms"] == 360.0 and b["latency_ms"]["p99"] == 50.0 and b["latency_elsewhere_ms"]["p99"] == 10.0
    assert b["failed_ops"] == 0 and "post-copy phase 360.0 ms: client p99 50.0 ms" in by(r)["explained"].message
    assert "postcopy_brownout" not in run(steady()).figures["migrations"][0]  # pre-copy: none


def mode(t_ms, fast, why="migration"):
    return {"type": "probe-mode", "t": t_ms * MS, "fast": fast, "why": why if fast else "idle"}


def test_only_fast_gaps_measure_a_slow_probe_rests_between_events():
    """Slow (100 ms) before 300 ms and after 1500, fast in between (calibrating until the
    migration's window opens at 500): the slow gaps are neither the resolution, nor the noise
    floor, nor a blackout."""
    h = (steady() + [mode(0, False), mode(300, True, "calibration"), mode(1500, False)]
         + probes(until_ms=300, every_ms=100)[1:] + probes(until_ms=1500, every_ms=5, start_ms=300, skip=(990, 1200))[1:]
         + probes(until_ms=2000, every_ms=100, start_ms=1500)[1:])
    f = by(run(h))["probe"].figures
    assert f["blackout_resolution_ms"] == 5.0 and f["noise_floor_ms"] == 5.0 and f["probe_max_blackout_ms"] == 210.0
    assert f["probe_fast_s"] == 1.2


def test_pace_is_fast_inside_event_windows_and_while_calibrating():
    from availlab.clients.probe import Pace

    p = Pace(0.005, 0.1)
    assert p.why_fast(0.0) == ""
    p.calibrate(2.0, now=1.0)
    assert p.why_fast(2.9) == "calibration" and p.why_fast(3.1) == ""
    p.see({"type": "migration-start"}, now=4.0)
    p.see({"type": "backup-start"}, now=4.0)
    assert p.why_fast(5.0) == "backup,migration"
    p.see({"type": "migration"}, now=6.0)
    p.see({"type": "backup-failed"}, now=6.0)
    assert p.why_fast(6.0) == ""
    p.see({"type": "backup-start"}, now=7.0)  # never closed: closes itself
    assert p.why_fast(100.0) == "backup" and p.why_fast(7.0 + 901) == ""


def test_a_probe_resting_at_its_slow_period_does_not_cut_the_pause_the_clients_do():
    """A probe that never went fast (it did not see the run's events) would cut coarsely: the
    clients' completions explain the pause instead."""
    h = steady() + [mode(0, False)] + probes(every_ms=100)[1:]
    e = run(h).figures["migrations"][0]["blackout_explained"]
    assert e["source"] == "clients"
