"""Checkers on crafted histories: a gap, a lost write, info ops, an empty history, a crash."""

from availlab.checks import SLO, check_run, pair_ops, percentile
from availlab.checks import migration as run_checks

MS = 1_000_000


def op(client, n, t0_ms, t1_ms, kind="ok", f="write", key=None, **extra):
    key = key or f"r:{client}:{n}"
    return [{"type": "invoke", "client": client, "op": n, "f": f, "key": key, "t": t0_ms * MS},
            {"type": kind, "client": client, "op": n, "f": f, "key": key, "t": t1_ms * MS,
             "t0": t0_ms * MS, "latency_ms": float(t1_ms - t0_ms), **extra}]


def identity(when, t_ms, started_at=1_700_000_000.0, instance="7312345678901234567", server="10.0.0.101"):
    return {"type": "server-identity", "t": t_ms * MS, "when": when, "vm": "sql1", "database": "postgresql",
            "server": server, "version": "PostgreSQL 15.8", "instance": instance, "started_at": started_at}


def steady(clients=2, until_ms=2000, step_ms=20, skip=None):
    """Each client writes every step_ms; `skip` = (from_ms, to_ms) in which nothing completes.
    The server's identity is read before and after, as the workload does."""
    h, n = [identity("before", 0)], 0
    for t in range(0, until_ms, step_ms):
        for c in range(clients):
            if skip and skip[0] <= t + 10 <= skip[1]:
                continue
            n += 1
            h += op(c, n, t, t + 10)
    return h + [identity("after", until_ms + 20)]


def final(keys):
    return {"type": "final-read", "t": 10**15, "ok": True, "keys": sorted(keys)}


def keys_of(h):
    return {r["key"] for r in h if r["type"] == "ok" and r["f"] == "write"}


MIG = [{"type": "migration", "vm": "sql1", "source": "h1", "target": "h2", "ok": True,
        "t0": 900 * MS, "t1": 1300 * MS, "downtime_ms": 80, "stats": {"memory_iteration": 3}}]


def test_clean_history_passes():
    h = steady()
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=100))
    assert r.verdict == "PASS", [(c.name, c.valid, c.message) for c in r.checks]
    assert r.figures["ops"] == 200 and r.figures["failed_ops"] == 0 and r.figures["lost_writes"] == 0
    assert r.figures["longest_blackout_ms"] == 20.0
    assert r.figures["migrations"][0]["downtime_ms"] == 80


def test_a_gap_is_the_blackout_and_is_attributed_to_the_migration():
    h = steady(skip=(1000, 1400))
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=300))
    assert r.figures["longest_blackout_ms"] == 420.0
    assert r.figures["migrations"][0]["client_blackout_ms"] == 420.0
    assert r.verdict == "FAIL"
    assert next(c for c in r.checks if c.name == "blackout").valid is False


def test_warmup_gaps_are_not_judged():
    h = steady(skip=(100, 600))
    h.append({"type": "warm", "t": 700 * MS})
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=100))
    assert r.figures["longest_blackout_ms"] == 20.0


def test_trailing_silence_until_workload_stop_counts():
    h = steady(until_ms=1000) + [{"type": "workload-stop", "t": 3000 * MS}]
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=1000))
    assert r.figures["longest_blackout_ms"] > 2000 and r.verdict == "FAIL"


def test_a_lost_write_fails():
    h = steady()
    keys = keys_of(h)
    lost = sorted(keys)[5]
    r = check_run(h + [final(keys - {lost})], MIG, SLO())
    lw = next(c for c in r.checks if c.name == "lost-writes")
    assert lw.valid is False and lw.figures["lost_keys"] == [lost] and r.figures["lost_writes"] == 1
    assert r.verdict == "FAIL"


def test_a_read_missing_an_acknowledged_key_is_a_lost_write():
    h = steady(clients=1, until_ms=200)
    key = sorted(keys_of(h))[0]
    h += op(0, 999, 500, 510, f="read", key=key, found=False)
    r = check_run(h + [final(keys_of(h))], MIG, SLO())
    lw = next(c for c in r.checks if c.name == "lost-writes")
    assert lw.figures["reads_missing_acknowledged"] == 1 and lw.valid is False


def test_info_and_failed_ops_are_counted_and_fail_the_slo():
    h = steady()
    h += op(0, 1001, 2100, 2200, kind="info", sqlstate="08S01", error="connection lost")
    h += op(1, 1002, 2100, 2150, kind="fail", f="read", sqlstate="57P01")
    h.append({"type": "invoke", "client": 1, "op": 1003, "f": "write", "key": "x", "t": 2300 * MS})
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=10_000))
    assert r.figures["failed_ops"] == 1 and r.figures["info_ops"] == 2  # the open invoke is info
    assert r.verdict == "FAIL"
    assert check_run(h + [final(keys_of(h))], MIG,
                     SLO(max_blackout_ms=10_000, max_failed_ops=3)).verdict == "PASS"


def test_empty_history_is_unknown_not_pass():
    r = check_run([], MIG, SLO())
    assert r.verdict == "UNKNOWN"
    assert {c.name: c.valid for c in r.checks}["outcomes"] == "unknown"


def test_missing_final_read_is_unknown():
    h = steady()
    r = check_run(h, MIG, SLO())
    assert next(c for c in r.checks if c.name == "lost-writes").valid == "unknown"
    assert r.verdict == "UNKNOWN"


def test_a_crashing_checker_gives_unknown(monkeypatch):
    def boom(*_a, **_k):
        raise ZeroDivisionError("bad maths")

    monkeypatch.setattr(run_checks, "lost_writes", boom)
    h = steady()
    r = check_run(h + [final(keys_of(h))], MIG, SLO())
    c = next(c for c in r.checks if c.name == "lost-writes")
    assert c.valid == "unknown" and "checker crashed: ZeroDivisionError: bad maths" in c.message
    assert r.verdict == "UNKNOWN"


def test_failed_migration_fails_the_run():
    h = steady()
    bad = [{**MIG[0], "ok": False, "error": "connection refused"}]
    r = check_run(h + [final(keys_of(h))], bad, SLO())
    assert r.verdict == "FAIL" and "connection refused" in next(
        c for c in r.checks if c.name == "migrations").message


def test_pairing_and_percentiles():
    ops = pair_ops(op(0, 1, 0, 5) + op(0, 2, 5, 7))
    assert [(o.op, o.type, o.latency_ms) for o in ops] == [(1, "ok", 5.0), (2, "ok", 2.0)]
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50) == 5
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99) == 10
    assert percentile([], 50) is None


def test_latency_split_inside_and_outside_migrations():
    h = steady()
    r = check_run(h + [final(keys_of(h))], MIG, SLO())
    lat = next(c for c in r.checks if c.name == "latency").figures
    assert lat["latency_inside_migrations_ms"]["n"] + lat["latency_outside_migrations_ms"]["n"] == 200
    assert lat["latency_inside_migrations_ms"]["n"] == 42  # t0 in [900, 1300] ms: 21 ticks x 2 clients


# --- evidence before verdict (issue 27, item 1): a late client must not hide an event ----------

def late_client(first_ms, client=2, until_ms=2000, step_ms=20):
    """A client whose first operation completes only at first_ms (a slow connect)."""
    h, n = [], 10_000
    for t in range(first_ms - 10, until_ms, step_ms):
        n += 1
        h += op(client, n, t, t + 10)
    return h


def blackout_of(r):
    return next(c for c in r.checks if c.name == "blackout")


def test_a_gap_inside_a_migration_counts_though_one_client_first_succeeded_after_it():
    """The issue's history: a 420 ms gap inside the migration, a third client first succeeding
    after it. Judged from that client's first success it was PASS, 20 ms, migration 0.0."""
    h = steady(skip=(1000, 1400)) + late_client(1450) + [{"type": "warm", "t": 200 * MS}]
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=300))
    assert r.figures["longest_blackout_ms"] == 420.0
    assert r.figures["migrations"][0]["client_blackout_ms"] == 420.0
    assert blackout_of(r).valid is False and r.verdict == "FAIL"
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=1000))  # within the SLO, but…
    b = blackout_of(r)
    assert b.valid == "unknown" and "client(s) [2] first succeeded only after migration 1 began" in b.message
    assert r.verdict == "UNKNOWN"


def test_with_no_warm_mark_gaps_count_from_the_workload_start_not_a_first_success():
    h = [{"type": "workload-start", "t": 0}] + late_client(600, client=0) + late_client(600, client=1)
    late = [{"type": "migration", "vm": "sql1", "source": "h1", "target": "h2", "ok": True,
             "t0": 1500 * MS, "t1": 1600 * MS, "downtime_ms": 50, "stats": {}}]
    r = check_run(h + [final(keys_of(h))], late, SLO(max_blackout_ms=100))
    assert r.figures["longest_blackout_ms"] == 600.0 and blackout_of(r).valid is False


def test_a_window_no_running_client_saw_is_unknown_never_a_zero_blackout():
    h = late_client(1400, client=0) + late_client(1400, client=1) + [{"type": "warm", "t": 1500 * MS}]
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=100_000))
    b = blackout_of(r)
    assert b.valid == "unknown" and "nothing saw it" in b.message, b.message
    assert r.figures["migrations"][0]["client_blackout_ms"] != 0.0


def test_a_window_that_outlasts_the_workload_is_unknown():
    h = steady(until_ms=1000) + [{"type": "warm", "t": 100 * MS}, {"type": "workload-stop", "t": 1100 * MS}]
    r = check_run(h + [final(keys_of(h))], MIG, SLO(max_blackout_ms=100_000))
    assert blackout_of(r).valid == "unknown" and "stopped before migration 1 ended" in blackout_of(r).message


# --- the same server, never restarted (issue 27, item 3) ------------------------------------------

def server_of(r):
    return next(c for c in r.checks if c.name == "server")


def _judged(*ids):
    h = [r for r in steady() if r["type"] != "server-identity"] + list(ids)
    return check_run(h + [final(keys_of(h))], MIG, SLO())


def test_the_same_server_before_and_after_passes():
    r = _judged(identity("before", 0), identity("after", 2100, started_at=1_700_000_000.9))
    assert server_of(r).valid is True and r.verdict == "PASS"


def test_a_replica_behind_the_same_address_fails():
    r = _judged(identity("before", 0), identity("after", 2100, instance="7399999999999999999"))
    assert server_of(r).valid is False and "different servers answered" in server_of(r).message


def test_a_server_that_restarted_during_the_run_is_named_and_fails():
    r = _judged(identity("before", 0), identity("after", 2100, started_at=1_700_000_600.0))
    s = server_of(r)
    assert s.valid is False and "the database restarted at 2023-11-14T22:23:20Z" in s.message
    assert r.verdict == "FAIL" and r.verdict_by_kind["outcome"] == "FAIL"


def test_missing_identity_evidence_is_unknown_never_left_out():
    assert server_of(_judged()).valid == "unknown"
    assert server_of(_judged(identity("before", 0))).valid == "unknown"
    old = [{k: v for k, v in identity(w, t).items() if k not in ("instance", "started_at")} for w, t in (("before", 0), ("after", 9))]
    s = server_of(_judged(*old))  # an address and a version prove neither: a replica has both
    assert s.valid == "unknown" and "could not be told apart" in s.message


def test_a_guest_that_rebooted_is_named_by_its_boot_id():
    a = {**identity("before", 0), "boot_id": "6a1f-first"}
    b = {**identity("after", 2100), "boot_id": "93c2-second"}
    s = server_of(_judged(a, b))
    assert s.valid is False and "the guest rebooted (boot id 6a1f-first read before, 93c2-second after)" in s.message
    assert server_of(_judged(a, {**b, "boot_id": None})).valid is True  # a boot id not read proves nothing either way


# Seen in CI: a template-started MariaDB guest's console at a TCG migration (abridged)
PANIC_CONSOLE = """\
[   17.859780] list_add corruption. next->prev should be prev (ffff8e749f0323f8), but was ffff8e749cc748a8.
[   17.862695] kernel BUG at lib/list_debug.c:27!
[   17.863586] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI
[   17.869815]  virtio_config_changed+0x56/0x70 [virtio]
[   17.878825] Kernel panic - not syncing: Fatal exception in interrupt
Loading, please wait...
Warning: fsck not present, so skipping root file system
availlab-init: database accepting connections (mariadb)
"""


def test_the_guest_console_names_a_kernel_crash_and_nothing_else():
    from availlab.lab.providers import kernel_crash_lines

    assert kernel_crash_lines(PANIC_CONSOLE) == [
        "list_add corruption. next->prev should be prev (ffff8e749f0323f8), but was ffff8e749cc748a8.",
        "kernel BUG at lib/list_debug.c:27!", "Kernel panic - not syncing: Fatal exception in interrupt"]
    quiet = ("[    0.412345] random: crng init done\n[    1.000000] EXT4-fs (vda): mounted filesystem\n"
             "availlab-init: BUG: not a kernel line\nOops from a database log\n")
    assert kernel_crash_lines(quiet) == []
    assert kernel_crash_lines("[  120.5] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [kworker/0:1H:95]\n"
                              "[  242.1] INFO: task mariadbd:216 blocked for more than 120 seconds.\n"
                              "[  300.0] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\n") == [
        "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [kworker/0:1H:95]",
        "INFO: task mariadbd:216 blocked for more than 120 seconds.", "rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"]


def test_a_guest_kernel_crash_fails_the_server_check_in_its_own_words():
    from availlab.lab.providers import kernel_crash_lines

    said = kernel_crash_lines(PANIC_CONSOLE)
    a = {**identity("before", 0), "boot_id": "6a1f-first", "kernel_crash": []}
    b = {**identity("after", 2100), "boot_id": "93c2-second", "kernel_crash": said}
    s = server_of(_judged(a, b))
    assert s.valid is False and s.figures["kernel_crash"] == said
    assert ": the guest kernel crashed and rebooted (boot id 6a1f-first, then 93c2-second); its console says: " in s.message
    assert "Kernel panic - not syncing" in s.message
    oops = server_of(_judged(a, {**b, "boot_id": "6a1f-first", "kernel_crash": ["BUG: kernel NULL pointer dereference"]}))
    assert oops.valid is False and "crashed; its console says: BUG: kernel NULL pointer" in oops.message  # no reboot needed
    assert server_of(_judged(a, {**b, "boot_id": "6a1f-first", "kernel_crash": []})).valid is True  # a clean console


def test_a_crash_on_an_emulator_known_to_lose_migrated_writes_names_that_cause_too():
    from availlab.lab.defects import caveats

    assert caveats("kvm", ["7.2.22"]) == [] and caveats("tcg", ["9.0.0", "10.1.2"]) == []
    known = caveats("tcg", ["9.2.0", "7.2.22"])  # one old host is enough
    assert len(known) == 1 and known[0].startswith("qemu-tcg-lost-dirty-pages:") and "03bfc2188f" in known[0]
    env = {"type": "environment", "t": 1, "accel": "tcg", "caveats": known}
    a = {**identity("before", 0), "boot_id": "b1", "kernel_crash": []}
    b = {**identity("after", 2100), "boot_id": "b1", "kernel_crash": ["list_add corruption."]}
    s = server_of(_judged(env, a, b))
    assert s.valid is False and "A known cause on this lab's emulator: qemu-tcg-lost-dirty-pages" in s.message
    assert "known cause" not in server_of(_judged(a, b)).message  # said only where the run recorded it


def test_lab_guests_boot_with_the_workaround_only_where_the_defect_applies():
    from availlab.lab.defects import guest_kernel_args

    assert guest_kernel_args("tcg", "7.2.22") == ["pti=on"]
    assert guest_kernel_args("kvm", "7.2.22") == [] and guest_kernel_args("tcg", "9.0.0") == []
    assert guest_kernel_args("tcg", None) == []  # an unreadable version claims nothing
    # a process per connection (PostgreSQL) flushes the stale entries itself: no pti, no slower boots
    from availlab.dialects import dialect

    assert guest_kernel_args("tcg", "7.2.22", dialect("postgresql").one_process) == []
    assert guest_kernel_args("tcg", "7.2.22", dialect("mariadb").one_process) == ["pti=on"]


def test_only_what_the_console_printed_during_the_run_is_read(tmp_path, monkeypatch):
    """A crash printed before the run (an earlier life of the VM) is not this run's; one printed
    during it is, read from where the console stood at the first identity read."""
    from availlab.clients import workload

    console = tmp_path / "sql1.console.log"
    console.write_text("[    3.0] kernel BUG at mm/old.c:1!\n")
    monkeypatch.setattr(workload, "guest_console", lambda st, vm: console)
    w = object.__new__(workload.Workload)
    w.st, w.vm, w._console_at = None, "sql1", 0
    assert w._kernel_crash("before") == []
    assert w._kernel_crash("after") == []
    console.write_text(console.read_text() + PANIC_CONSOLE)
    assert w._kernel_crash("after")[-1] == "Kernel panic - not syncing: Fatal exception in interrupt"
    monkeypatch.setattr(workload, "guest_console", lambda st, vm: None)
    assert w._kernel_crash("after") is None  # no console kept (a remote cluster): no evidence, not "clean"
