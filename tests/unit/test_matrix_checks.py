"""Fault-matrix judging on crafted histories: each fault on its own slice."""

from availlab.checker import SLO
from availlab.matrix import check_matrix

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


def fault_slice(name, t0, lose=0, state="running", details=None):
    h, keys = ops(0, t0, t0, 50, run=name)
    h = [{"type": "fault-begin", "t": t0 * MS, "fault": name}] + h
    h += [{"type": "final-read", "t": (t0 + 600) * MS, "ok": True, "keys": keys[lose:]},
          {"type": "fault-end", "t": (t0 + 601) * MS, "fault": name}]
    ev = {"type": "fault", "fault": name, "t0": (t0 + 100) * MS, "t1": (t0 + 300) * MS,
          "vm_host_after": "h1", "vm_state_after": state, "action_ok": False, "repairs": [], "details": details or {}}
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
