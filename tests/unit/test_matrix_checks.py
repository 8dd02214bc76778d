"""Fault-matrix judging on crafted histories: each fault on its own slice."""

from availlab.checks import SLO, check_matrix
from availlab.events.faults import FAMILY

MS = 1_000_000


def ops(client, start_n, t0_ms, n, run="r"):
    out = []
    for i in range(n):
        k = f"{run}:{client}:{start_n + i}"
        t = t0_ms + 10 * i
        out += [{"type": "invoke", "client": client, "op": start_n + i, "f": "write", "key": k, "t": t * MS},
                {"type": "ok", "client": client, "op": start_n + i, "f": "write", "key": k, "t": (t + 5) * MS,
                 "latency_ms": 5.0}]
    return out, [o["key"] for o in out if o["type"] == "ok"]


def fault_slice(name, t0, lose=0, state="running", details=None, struck=True):
    h, keys = ops(0, t0, t0, 50, run=name)
    h = [{"type": "fault-begin", "t": t0 * MS, "fault": name}] + h
    h += [{"type": "final-read", "t": (t0 + 600) * MS, "ok": True, "keys": keys[lose:]},
          {"type": "fault-end", "t": (t0 + 601) * MS, "fault": name}]
    ev = {"type": "fault", "fault": name, "family": FAMILY[name], "t0": (t0 + 100) * MS, "t1": (t0 + 300) * MS,
          "vm_host_after": "h1", "vm_state_after": state, "action_ok": False, "repairs": [], "details": details or {},
          "struck": struck, "evidence": "what showed it" if struck else "nothing to strike"}
    return h, ev


def test_every_fault_passing_gives_pass_and_one_row_each():
    h1, e1 = fault_slice("abort-migration", 0)
    h2, e2 = fault_slice("kill-dest-qemu", 10_000)
    r = check_matrix(h1 + h2, [e1, e2], SLO())
    assert r.verdict == "PASS"
    assert [row["fault"] for row in r.figures["faults"]] == ["abort-migration", "kill-dest-qemu"]
    assert all(row["lost_writes"] == 0 and row["verdict"] == "PASS" for row in r.figures["faults"])


def test_a_lost_write_or_a_dead_vm_fails_only_that_fault():
    h1, e1 = fault_slice("abort-migration", 0, lose=1)
    h2, e2 = fault_slice("kill-dest-qemu", 10_000, state="shut-off")
    h3, e3 = fault_slice("cut-migration-link", 20_000)
    r = check_matrix(h1 + h2 + h3, [e1, e2, e3], SLO())
    verdicts = {row["fault"]: row["verdict"] for row in r.figures["faults"]}
    assert verdicts == {"abort-migration": "FAIL", "kill-dest-qemu": "FAIL", "cut-migration-link": "PASS"}
    assert r.verdict == "FAIL" and r.figures["lost_writes"] == 1


def test_no_fault_run_is_unknown():
    assert check_matrix([], [], SLO()).verdict == "UNKNOWN"


def test_a_fault_event_without_its_family_is_unknown_not_judged_as_a_migration():
    h, e = fault_slice("agent-hang-during-freeze", 0)
    del e["family"]
    r = check_matrix(h, [e], SLO())
    assert r.verdict == "UNKNOWN" and r.figures["faults"][0]["expected"].startswith("unknown")


def test_a_backup_fault_fails_if_the_guest_stays_frozen_or_half_a_set_is_left():
    thawed = {"guest_thawed": True, "partial_sets_left": []}
    h1, e1 = fault_slice("agent-hang-during-freeze", 0, details=thawed)
    h2, e2 = fault_slice("backup-storage-full", 10_000, details={"guest_thawed": True, "partial_sets_left": ["x.partial"]})
    r = check_matrix(h1 + h2, [e1, e2], SLO())
    assert {row["fault"]: row["verdict"] for row in r.figures["faults"]} == {
        "agent-hang-during-freeze": "PASS", "backup-storage-full": "FAIL"}
    h3, e3 = fault_slice("agent-hang-during-freeze", 0, details={"guest_thawed": False, "partial_sets_left": []})
    assert check_matrix(h3, [e3], SLO()).verdict == "FAIL"
    # a backup fault without its after-the-fact inspection is not a pass
    h4, e4 = fault_slice("backup-storage-full", 0)
    assert check_matrix(h4, [e4], SLO()).verdict == "FAIL"


def _killed_sessions_slice(errors, recover=True, database="postgresql"):
    """Two clients; at t=100 ms the server ends their sessions; `errors` are the completions the
    clients then record (kind, f, sqlstate, message); with `recover`, both complete ops afterwards."""
    h = [{"type": "fault-begin", "t": 0, "fault": "kill-db-sessions"},
         {"type": "workload-start", "t": 0, "run_id": "r", "database": database}]
    keys = []
    for c in (0, 1):
        h += [{"type": "invoke", "client": c, "op": 1, "f": "write", "key": f"r:{c}:1", "t": 10 * MS},
              {"type": "ok", "client": c, "op": 1, "f": "write", "key": f"r:{c}:1", "t": 20 * MS}]
        keys.append(f"r:{c}:1")
    for i, (kind, f, state, msg) in enumerate(errors):
        c = i % 2
        h += [{"type": "invoke", "client": c, "op": 2 + i, "f": f, "key": f"r:{c}:x{i}", "t": 110 * MS},
              {"type": kind, "client": c, "op": 2 + i, "f": f, "key": f"r:{c}:x{i}", "t": 120 * MS,
               "sqlstate": state, "error": msg}]
    if recover:
        for c in (0, 1):
            h += [{"type": "invoke", "client": c, "op": 50, "f": "write", "key": f"r:{c}:50", "t": 300 * MS},
                  {"type": "ok", "client": c, "op": 50, "f": "write", "key": f"r:{c}:50", "t": 310 * MS}]
            keys.append(f"r:{c}:50")
    h += [{"type": "final-read", "t": 400 * MS, "ok": True, "keys": keys},
          {"type": "fault-end", "t": 401 * MS, "fault": "kill-db-sessions"}]
    ev = {"type": "fault", "fault": "kill-db-sessions", "family": "db", "t0": 90 * MS, "t1": 100 * MS, "injected_at": 95 * MS,
          "vm_host_after": "h1", "vm_state_after": "running", "action_ok": True, "repairs": [], "details": {},
          "struck": True, "evidence": "2 of 2 workload sessions ended by the server"}
    return h, [ev]


def test_killed_sessions_pass_when_every_error_is_a_recognised_lost_connection():
    h, ev = _killed_sessions_slice([("info", "write", "08S01", "could not send data to server"),
                                    ("fail", "read", "57P01", "terminating connection due to administrator command")])
    r = check_matrix(h, ev, SLO())
    row = r.figures["faults"][0]
    assert r.verdict == "PASS" and row["failed_ops"] == 1 and row["info_ops"] == 1 and row["lost_writes"] == 0


def test_killed_sessions_fail_on_an_unrecognised_error_a_failed_write_or_a_client_that_never_recovers():
    statement_error = [("fail", "write", "23505", "duplicate key value violates unique constraint")]
    assert check_matrix(*_killed_sessions_slice(statement_error), SLO()).verdict == "FAIL"
    mariadb_lost = [("info", "write", "HY000", "Lost connection to server during query")]
    assert check_matrix(*_killed_sessions_slice(mariadb_lost, database="mariadb"), SLO()).verdict == "PASS"
    # PostgreSQL's profile does not know MariaDB's words: judged by the VM's own profile
    assert check_matrix(*_killed_sessions_slice(mariadb_lost), SLO()).verdict == "FAIL"
    stuck = [("info", "write", "08S01", "could not send data to server")]
    r = check_matrix(*_killed_sessions_slice(stuck, recover=False), SLO())
    assert r.verdict == "FAIL" and "never recovered" in next(c for c in r.checks if c.name.startswith("fault ")).message


# --- a fault must prove it struck (issue 27, item 2) ----------------------------------------------

def test_a_fault_that_did_not_strike_is_unknown_naming_why_never_pass():
    h1, e1 = fault_slice("kill-db-sessions", 0, struck=False)
    h2, e2 = fault_slice("abort-migration", 10_000)
    r = check_matrix(h1 + h2, [e1, e2], SLO())
    assert {row["fault"]: row["verdict"] for row in r.figures["faults"]} == {
        "kill-db-sessions": "UNKNOWN", "abort-migration": "PASS"}
    assert r.verdict == "UNKNOWN"
    row = next(c for c in r.checks if c.name == "fault kill-db-sessions")
    assert "fault did not strike: nothing to strike" in row.message


def test_a_fault_event_without_evidence_is_unknown():
    h, e = fault_slice("kill-dest-qemu", 0)
    del e["struck"], e["evidence"]  # an older availlab, or a record cut short
    r = check_matrix(h, [e], SLO())
    assert r.verdict == "UNKNOWN" and "no evidence that it acted" in r.checks[-1].message


def test_a_fault_requested_but_never_run_is_unknown():
    h, e = fault_slice("abort-migration", 0)
    req = {"type": "faults-requested", "t": 0, "faults": ["abort-migration", "kill-dest-qemu"]}
    r = check_matrix([req] + h, [e], SLO())
    assert r.verdict == "UNKNOWN"
    assert [(c.name, c.message) for c in r.checks if c.valid == "unknown"] == [
        ("fault kill-dest-qemu", "requested but never run")]
