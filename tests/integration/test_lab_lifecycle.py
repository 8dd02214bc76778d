"""The foundation's acceptance path, on real components:

lab up (2 hosts) -> vm create sql1 on h1 -> pyodbc from the client namespace returns version()
with "PostgreSQL 15" -> live migration h1->h2 while a query loop runs, 0 failed queries ->
lab up again is harmless -> lab down leaves no namespace, bridge, cgroup, libvirtd or qemu.
"""

from __future__ import annotations

import ipaddress
import time

import pytest
from pyroute2 import IPRoute

from availlab.checks import SLO, check_run, pair_ops
from availlab.clients.sql import run_sql
from availlab.clients.workload import under_load, workload_spec
from availlab.events.migration import live_migrate
from availlab.history import JsonlWriter, read_jsonl
from availlab.lab import cgroups, hostd, local, netns, state
from availlab.lab import providers as lab
from availlab.lab.virt import Hypervisor
from availlab.vm import create as vm
from availlab.waiting import wait_until

from .conftest import residue_report, topology

LAB = "itest"
CAPS_AT_UP: dict[str, dict] = {}  # each host's cached QEMU capabilities (files by inode, mtime) after lab up


@pytest.fixture(scope="module")
def up_lab():
    lab.down(LAB)  # a previous crashed run must not decide this one
    t0 = time.monotonic()
    st = lab.up(topology(LAB))
    up_s = time.monotonic() - t0
    CAPS_AT_UP.update({h.name: hostd.capability_files(local.host_daemon(h)) for h in st.hosts.values()})
    try:
        yield st, up_s
    finally:
        lab.down(LAB)


def test_lab_up_creates_hosts_with_distinct_daemons(up_lab, figures):
    st, up_s = up_lab
    figures["lab_up_s (2 hosts)"] = round(up_s, 1)
    assert st.status == "up"
    assert set(netns.list_lab_namespaces(LAB)) == {
        f"availlab-{LAB}-{r}" for r in ("sw", "client", "h1", "h2")}
    uuids = set()
    for h in st.hosts.values():
        with Hypervisor(h.name, h.uri) as hv:
            uuids.add(hv.host_uuid())
        assert h.address in " ".join(netns.addresses(h.namespace))
        assert local.host_daemon(h).pid()
    assert len(uuids) == 2
    s = lab.status(LAB)
    assert s["accel"]["accel"] in ("kvm", "tcg") and s["accel"]["reason"]
    figures["accel"] = f"{s['accel']['accel']} ({s['accel']['reason']})"
    assert [h["daemon"] for h in s["hosts"]] == ["running", "running"]


def test_host_cgroups_cap_cpu_and_hold_the_daemons(up_lab):
    from availlab.lab import cgroups

    st, _ = up_lab
    for h in st.hosts.values():
        cg = cgroups.host_cgroup(LAB, h.name)
        assert local.host_daemon(h).pid() in cg.pids()
        for d in cg.dirs:
            if (d / "cpu.cfs_quota_us").exists():
                assert int((d / "cpu.cfs_quota_us").read_text()) == 100_000  # cores: 1


def test_lab_addresses_stay_inside_lab_namespaces(up_lab):
    st, _ = up_lab
    net = ipaddress.IPv4Network(st.topology["network"]["cidr"])
    with IPRoute() as ipr:  # the root namespace
        root_addrs = [a.get("address") for a in ipr.get_addr(family=2)]
        root_routes = [(r.get("dst"), r.get("dst_len")) for r in ipr.get_routes(family=2, table=254)]
        root_links = [link.get("ifname") for link in ipr.get_links()]
    assert not [a for a in root_addrs if ipaddress.IPv4Address(a) in net], root_addrs
    for dst, length in root_routes:
        if dst:
            assert not ipaddress.IPv4Network(f"{dst}/{length}", strict=False).overlaps(net), (dst, length)
    assert not {"sw0", "br0", "p-h1", "p-client"} & set(root_links)
    for ns in netns.list_lab_namespaces(LAB):
        for r in netns.routes(ns):
            assert r["dst"] is not None, f"{ns} has a default route: {r}"
            assert r["gateway"] is None, f"{ns} routes via a gateway: {r}"
            assert ipaddress.IPv4Network(f"{r['dst']}/{r['dst_len']}", strict=False).subnet_of(net), r


def test_vm_answers_sql_then_survives_live_migration(up_lab, figures, tmp_path):
    st, _ = up_lab
    ready = vm.create(LAB, "sql1", "h1", cold=True)  # the cold path stays proven (DR restores boot cold)
    assert ready.start == "cold"
    figures["vm_boot_to_db_ready_s"] = ready.boot_to_db_s
    st = state.require_up(LAB)
    rows = run_sql(st, "sql1", "SELECT version(), host(inet_server_addr())")
    assert "PostgreSQL 15" in rows[0][0]
    assert rows[0][1] == st.vms["sql1"].address
    assert lab.locate_vm(st, "sql1") == ("h1", "running")

    # the QEMU of sql1 runs inside h1's CPU cgroup: the host's capacity cap really applies
    cg = cgroups.host_cgroup(LAB, "h1")
    qemu = [p for p in netns.pids_in(st.hosts["h1"].namespace)
            if open(f"/proc/{p}/comm").read().startswith("qemu")]
    assert qemu and set(qemu) <= set(cg.pids())
    used0 = cg.usage_ns()

    with JsonlWriter(tmp_path / "history.jsonl") as hist:
        with under_load(st, "sql1", workload_spec(clients=2), hist, warmup_s=1.0, cooldown_s=1.5):
            result = live_migrate(st, "sql1", "h2")
    assert result.ok, result.error
    assert cg.usage_ns() > used0, "h1's cgroup accounted the guest's CPU time"
    res = check_run(read_jsonl(tmp_path / "history.jsonl"), [result.to_event()], SLO())
    f = res.figures
    figures["migration_h1_h2"] = (f"{f['ops']} ops (2 clients), {f['failed_ops']} failed, "
                                  f"{f['lost_writes']} lost, longest gap {f['longest_blackout_ms']} ms, "
                                  f"hypervisor downtime {result.downtime_ms} ms, "
                                  f"total {(result.t1 - result.t0) / 1e6:.0f} ms")
    assert f["ops"] > 20 and f["failed_ops"] == 0 and f["info_ops"] == 0 and f["lost_writes"] == 0
    ops = pair_ops(read_jsonl(tmp_path / "history.jsonl"))
    assert any(result.t0 <= o.t0 <= result.t1 for o in ops), "clients ran during the migration"
    assert max(o.t1 for o in ops if o.type == "ok") > result.t1, "and kept succeeding after it"
    assert lab.locate_vm(st, "sql1") == ("h2", "running")
    with Hypervisor("h1", st.hosts["h1"].uri) as h1:
        assert not h1.has_domain("sql1"), "UNDEFINE_SOURCE: h1 must forget the VM"
    with Hypervisor("h2", st.hosts["h2"].uri) as h2:
        assert "sql1" in [d.name for d in h2.domains() if d.persistent], "PERSIST_DEST"
    assert "PostgreSQL 15" in run_sql(st, "sql1", "SELECT version()")[0][0]


def test_vm_migrate_from_the_cli_under_load_keeps_every_query(up_lab, figures, tmp_path):
    """`availlab vm migrate` as an operator runs it, with 4 clients on the VM: a progress line, the
    runbook's own record (--json, --events), and 0 failed, 0 lost."""
    import json

    from .conftest import cli

    st = state.require_up(LAB)
    before = lab.locate_vm(st, "sql1")[0]
    target = "h1" if before == "h2" else "h2"
    bad = cli(LAB, "vm", "migrate", "sql1", "--to", "h9", timeout=60)
    assert bad.returncode == 2 and "unknown host 'h9'" in bad.stderr, bad.stderr
    with JsonlWriter(tmp_path / "history.jsonl") as hist:
        with under_load(st, "sql1", workload_spec(clients=4), hist, warmup_s=1.0, cooldown_s=1.5):
            r = cli(LAB, "vm", "migrate", "sql1", "--to", target, "--json", "--events",
                    str(tmp_path / "events.jsonl"), timeout=300)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["ok"] and rec["source"] == before and rec["target"] == target and rec["downtime_ms"] is not None
    assert f"sql1 -> {target}:" in r.stderr and "MiB/s" in r.stderr  # the progress line
    events = read_jsonl(tmp_path / "events.jsonl")
    assert [e["type"] for e in events] == ["migration-start", "migration"]
    res = check_run(read_jsonl(tmp_path / "history.jsonl"), events, SLO())
    f = res.figures
    figures["vm migrate (CLI)"] = (f"{f['ops']} ops (4 clients), {f['failed_ops']} failed, {f['lost_writes']} lost, "
                                   f"longest gap {f['longest_blackout_ms']} ms, downtime {rec['downtime_ms']} ms")
    assert f["ops"] > 20 and f["failed_ops"] == 0 and f["info_ops"] == 0 and f["lost_writes"] == 0
    assert lab.locate_vm(st, "sql1") == (target, "running")
    info = cli(LAB, "vm", "jobinfo", "sql1", "--completed", "--json")  # read-only, as virsh domjobinfo
    assert info.returncode == 0 and json.loads(info.stdout)["host"] == target, info.stderr

    # Ctrl-C during `vm migrate` aborts the job: the VM stays where it was (a slow link keeps it going)
    import signal
    import subprocess
    import sys

    slow = subprocess.Popen([sys.executable, "-m", "availlab.cli", "--lab", LAB, "vm", "migrate", "sql1", "--to", before,
                             "--bandwidth", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: "iteration" in _job(LAB), 30, 0.2), "the slow migration never started"
        slow.send_signal(signal.SIGINT)
        out, err = slow.communicate(timeout=90)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    assert slow.returncode == 1 and "aborting the migration of sql1" in err and "FAILED" in err, err[-2000:]
    assert lab.locate_vm(state.require_up(LAB), "sql1") == (target, "running")


def _job(lab_name: str) -> str:
    from .conftest import cli

    return cli(lab_name, "vm", "jobinfo", "sql1").stdout


def test_host_drain_and_resume_under_load_keep_every_query(up_lab, figures, tmp_path):
    """The seed's planned maintenance: drain the VM's host (its VM moves to the other host, the
    host is recorded drained), then resume it (the VM comes back): 4 clients, 0 failed, 0 lost."""
    import json

    from .conftest import cli

    st = state.require_up(LAB)
    home = lab.locate_vm(st, "sql1")[0]
    other = "h1" if home == "h2" else "h2"
    ev = str(tmp_path / "events.jsonl")
    with JsonlWriter(tmp_path / "history.jsonl") as hist:
        with under_load(st, "sql1", workload_spec(clients=4), hist, warmup_s=1.0, cooldown_s=1.5):
            d = cli(LAB, "host", "drain", home, "--json", "--events", ev, timeout=300)
            assert d.returncode == 0, d.stderr
            assert lab.locate_vm(st, "sql1") == (other, "running")
            assert state.load(LAB).drained == {home: ["sql1"]}
            again = cli(LAB, "host", "drain", other, timeout=60)  # the only other host is drained
            assert again.returncode == 2 and "no other host" in again.stderr, again.stderr
            r = cli(LAB, "host", "resume", home, "--json", "--events", ev, timeout=300)
    assert r.returncode == 0, r.stderr
    out, back = json.loads(d.stdout), json.loads(r.stdout)
    assert [m["vm"] for m in out["migrations"]] == ["sql1"] and out["ok"]
    assert [(m["source"], m["target"]) for m in back["migrations"]] == [(other, home)]
    assert lab.locate_vm(st, "sql1") == (home, "running") and state.load(LAB).drained == {}
    events = read_jsonl(tmp_path / "events.jsonl")
    windows = [(e["type"], e["host"], [(m["vm"], m["target"]) for m in e["moves"]]) for e in events
               if e["type"] in ("host-drain", "host-resume")]  # each writes its own record
    assert windows == [("host-drain", home, [("sql1", other)]), ("host-resume", home, [("sql1", home)])]
    res = check_run(read_jsonl(tmp_path / "history.jsonl"), events, SLO())
    f = res.figures
    figures["host drain + resume"] = (f"{f['ops']} ops (4 clients), {f['failed_ops']} failed, {f['lost_writes']} "
                                      f"lost, longest gap {f['longest_blackout_ms']} ms")
    assert f["ops"] > 20 and f["failed_ops"] == 0 and f["info_ops"] == 0 and f["lost_writes"] == 0


def test_a_postcopy_migration_records_its_downtime_switch_and_pages(up_lab, figures, tmp_path):
    """Post-copy with the memory dirtier under 4 clients (issue 16): libvirt keeps no completed
    statistics after post-copy, so the record takes the pause from libvirt's lifecycle events and
    the post-copy figures from the samples taken while the source answered; the clients' latency
    inside the post-copy phase is its brownout."""
    from availlab.events.dirtier import MemoryDirtier
    from availlab.events.migration import migration_tuning
    from availlab.events.nemesis import Nemeses, Stage
    from availlab.events.ops import Migrate

    st = state.require_up(LAB)
    here = lab.locate_vm(st, "sql1")[0]
    there = "h1" if here == "h2" else "h2"
    try:
        with JsonlWriter(tmp_path / "history.jsonl") as hist, JsonlWriter(tmp_path / "events.jsonl") as ev:
            nemeses = Nemeses(Stage(st=st, vm="sql1", events=ev), [
                MemoryDirtier(128), Migrate(there, migration_tuning(postcopy=True, bandwidth_mib_s=32))])
            with under_load(st, "sql1", workload_spec(clients=4), hist, warmup_s=2.0, cooldown_s=1.0, nemeses=nemeses):
                _, rec = nemeses.invoke()
    finally:  # the tests after this one expect it where it was, whatever failed here
        if lab.locate_vm(st, "sql1")[0] != here:
            back = live_migrate(st, "sql1", here)
            assert back.ok, back.error
    assert rec.ok, rec.error
    assert "POSTCOPY" in rec.flags and rec.downtime_ms is not None and rec.downtime_ms > 0
    assert rec.downtime_source in ("libvirt", "lifecycle events")
    pc = rec.postcopy
    assert pc["switch_after_ms"] > 0 and pc["phase_ms"] is not None and pc["pages_requested"] is not None
    assert "post-copy" in [p["phase"] for p in rec.phases]
    res = check_run(read_jsonl(tmp_path / "history.jsonl"), read_jsonl(tmp_path / "events.jsonl"), SLO())
    f = res.figures
    assert f["failed_ops"] == 0 and f["info_ops"] == 0 and f["lost_writes"] == 0, res.checks
    brown = f["migrations"][0].get("postcopy_brownout")
    assert brown, f"no post-copy phase to judge the brownout of: {f['migrations'][0]}"
    assert brown["latency_ms"]["n"] > 0 and brown["failed_ops"] == 0
    figures["post-copy migration"] = (f"downtime {rec.downtime_ms} ms ({rec.downtime_source}), switch after "
                                      f"{pc['switch_after_ms']} ms, post-copy phase {pc['phase_ms']} ms, "
                                      f"{pc['pages_requested']} pages requested; 4 clients: {f['ops']} ops 0/0, "
                                      f"latency in the post-copy phase p50/p99 {brown['latency_ms']['p50']}/"
                                      f"{brown['latency_ms']['p99']} ms (elsewhere {brown['latency_elsewhere_ms']['p50']}/"
                                      f"{brown['latency_elsewhere_ms']['p99']} ms)")


def test_clients_die_with_a_killed_recorder(up_lab, tmp_path):
    """A SIGKILLed `availlab run` must not leave clients hammering the database."""
    import signal
    import subprocess
    import sys

    code = (f"import time\nfrom availlab.lab import state\nfrom availlab.clients.workload import Workload, workload_spec\n"
            f"from availlab.history import JsonlWriter\n"
            f"h = JsonlWriter({str(tmp_path / 'h.jsonl')!r})\n"
            f"Workload(state.require_up({LAB!r}), 'sql1', workload_spec(clients=2), h).start()\n"
            f"time.sleep(300)\n")
    rec = subprocess.Popen([sys.executable, "-c", code])
    try:
        hist = tmp_path / "h.jsonl"
        assert wait_until(lambda: hist.exists() and len(hist.read_text().splitlines()) >= 20, 60, 0.2), \
            "the clients never recorded 20 lines"
        clients = [p for p in netns.pids_in(f"availlab-{LAB}-client")
                   if "availlab.clients.worker" in open(f"/proc/{p}/cmdline").read()]
        assert len(clients) == 2
    finally:
        rec.send_signal(signal.SIGKILL)  # our own child, by its handle
        rec.wait()
    wait_until(lambda: not any(_alive(p) for p in clients), 15, 0.2)
    assert not [p for p in clients if _alive(p)], "clients outlived their killed recorder"


def test_lab_up_twice_is_harmless(up_lab):
    st, _ = up_lab
    pids = {h: local.host_daemon(x).pid() for h, x in st.hosts.items()}
    again = lab.up(topology(LAB))
    assert {h: local.host_daemon(x).pid() for h, x in again.hosts.items()} == pids
    assert "PostgreSQL" in run_sql(again, "sql1", "SELECT version()")[0][0]


def test_a_password_with_odbc_syntax_logs_in_through_the_real_driver(up_lab):
    """unixODBC and psqlODBC parse the connection string we build: a password holding `;`,
    braces and `=` must reach the server whole, not end early or add attributes."""
    from dataclasses import replace

    from availlab.clients.sql import _call, dsn_for
    from availlab.lab.credentials import DB_USER, db_password

    st = state.require_up(LAB)
    hostile = "p;w}d{x=1;UID=postgres}"
    run_sql(st, "sql1", f"ALTER ROLE {DB_USER} PASSWORD '{hostile}'")
    try:
        dsn = replace(dsn_for(st, "sql1"), password=hostile)
        reply = _call(st, dsn, {"mode": "query", "sql": "SELECT current_user", "params": []}, 30)
        assert reply.get("ok"), reply
        assert reply["rows"] == [[DB_USER]]
        wrong = _call(st, replace(dsn, password=hostile[:-1]), {"mode": "query", "sql": "SELECT 1",
                                                                 "params": []}, 30)
        assert not wrong.get("ok"), "a wrong password must not log in"
    finally:
        _call(st, replace(dsn_for(st, "sql1"), password=hostile),
              {"mode": "query", "sql": f"ALTER ROLE {DB_USER} PASSWORD '{db_password(LAB)}'", "params": []}, 30)
    assert run_sql(st, "sql1", "SELECT 1") == [(1,)]


def test_the_printed_dsn_connects_with_pyodbcs_own_timeout(up_lab):
    """What an operator does with `availlab lab dsn`: pyodbc.connect(s, timeout=3) (psqlODBC refused
    it while the string carried its own connect_timeout)."""
    import subprocess
    import sys

    from .conftest import cli

    r = cli(LAB, "lab", "dsn", "sql1", "--show-secret", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "timeout=3" in r.stderr  # the hint says how to set one
    code = ("import pyodbc, sys; c = pyodbc.connect(sys.stdin.read().strip(), timeout=3); "
            "print(c.execute('SELECT 1').fetchone()[0])")
    st = state.require_up(LAB)
    q = subprocess.run(["ip", "netns", "exec", st.client_namespace, sys.executable, "-c", code],
                       input=r.stdout, capture_output=True, text=True, timeout=60)
    assert q.returncode == 0 and q.stdout.strip() == "1", q.stderr


def test_an_image_a_vm_runs_on_is_neither_rebuilt_nor_pruned(up_lab):
    import subprocess
    import sys

    from availlab.lab.imagecache import cached_images

    st = state.require_up(LAB)
    before = {i.digest: i.status for i in cached_images()}
    r = subprocess.run([sys.executable, "-m", "availlab.cli", "image", "build", "--force"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "is not rebuilt" in r.stderr and "uses it as its base disk" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "availlab.cli", "image", "prune", "--dry-run"],
                       capture_output=True, text=True, timeout=120)  # the machine's cache: look, never prune
    assert r.returncode == 0, r.stderr
    in_use = [d for d, s in before.items() if s.startswith("in use by") or s == "current"]
    assert in_use and not [d for d in in_use if d in r.stdout], r.stdout
    assert {i.digest: i.status for i in cached_images()} == before
    assert "PostgreSQL" in run_sql(st, "sql1", "SELECT version()")[0][0]


def test_a_paused_or_shut_off_vm_is_brought_back_by_the_next_run_not_refused(up_lab):
    """QEMU on a failed write, or a user, can leave the VM paused; a crash can leave it shut off.
    The next runbook's ensure_vm brings it back instead of failing on "already exists"."""
    import libvirt

    from availlab.scenarios import steps

    st = state.require_up(LAB)  # with sql1 in it (the fixture's copy predates the VM)
    host = lab.locate_vm(st, "sql1")[0]
    conn = libvirt.open(st.hosts[host].uri)
    try:
        conn.lookupByName("sql1").suspend()
    finally:
        conn.close()
    assert lab.locate_vm(st, "sql1") == (host, "paused")
    out = steps.ensure_vm(steps.Lab.load(LAB), "sql1", "h1")
    assert out["created"] is False and out["repaired"] == f"sql1 was paused (user) on {host}: resumed"
    assert lab.locate_vm(st, "sql1") == (host, "running")
    assert "PostgreSQL 15" in run_sql(st, "sql1", "SELECT version()")[0][0]

    # powered off (a crash, a killed run): started again from its own disk, data kept
    run_sql(st, "sql1", "CREATE TABLE IF NOT EXISTS survives (x int); INSERT INTO survives VALUES (42)")
    with Hypervisor(host, st.hosts[host].uri) as hv:
        hv.destroy("sql1")
    assert lab.locate_vm(st, "sql1") == (host, "shut-off")
    out = steps.ensure_vm(steps.Lab.load(LAB), "sql1", "h1")
    assert out["repaired"] == f"sql1 was shut off on {host}: started"
    assert run_sql(st, "sql1", "SELECT x FROM survives")[0][0] == 42


def test_vm_create_refuses_duplicates_and_unknown_hosts(up_lab):
    from availlab.errors import UsageError, VMError

    where = lab.locate_vm(state.require_up(LAB), "sql1")[0]
    with pytest.raises(VMError, match=f"already exists on {where}"):
        vm.create(LAB, "sql1", "h1" if where == "h2" else "h2")
    with pytest.raises(UsageError, match="unknown host 'h7'"):
        vm.create(LAB, "sql2", "h7")


def test_a_template_start_takes_a_fraction_of_a_cold_boot_beside_it(up_lab, figures):
    """The guard of the core path (issue 26: template starts took 105 s against 1.4 s, unseen):
    a ratio of two starts of the same VM measured one after the other, so a slow hour weighs on
    both. Healthy here: 1.0-1.7 s against 10-26 s, about a tenth; issue 26's defect was 7. The
    limit, 0.5, leaves room for what the same minute does not cancel: in one fresh run, this start
    took 5.6 s beside a 15 s cold boot (0.37), while that run's 20 template starts had a median
    of 1.7 s and its template builds took 16-33 s."""
    if lab.locate_vm(state.require_up(LAB), "sql1"):
        vm.delete(LAB, "sql1")
    cold = vm.create(LAB, "sql1", "h1", cold=True)
    vm.delete(LAB, "sql1")
    warm = vm.create(LAB, "sql1", "h1")  # builds the template first if no earlier test did
    assert (cold.start, warm.start) == ("cold", "template")
    ratio = warm.boot_to_db_s / cold.boot_to_db_s
    figures["template start vs cold boot beside it"] = (f"{warm.boot_to_db_s:.2f} s vs {cold.boot_to_db_s:.1f} s "
                                                        f"(ratio {ratio:.2f}, limit 0.5)")
    assert ratio < 0.5, (f"a template start took {warm.boot_to_db_s:.1f} s, a cold boot beside it "
                          f"{cold.boot_to_db_s:.1f} s: the template path regressed")
    assert "PostgreSQL 15" in run_sql(state.require_up(LAB), "sql1", "SELECT version()")[0][0]


def test_no_daemon_probed_qemu_again_after_lab_up(up_lab):
    """Cold boots, template starts and migrations in both directions ran on this lab: each host's
    libvirtd still holds the QEMU capabilities it had at lab up (a re-probe rewrites the file;
    issue 26's daemons did it ~40 times per VM start). Their /dev/kvm reads as no KVM to both
    libvirt and QEMU: a read-only regular file, where the machine has one."""
    import os

    st, _ = up_lab
    for h in st.hosts.values():
        d = local.host_daemon(h)
        assert CAPS_AT_UP[h.name] and hostd.capability_files(d) == CAPS_AT_UP[h.name], h.name
        if st.accel["accel"] == "tcg" and os.path.exists("/dev/kvm"):
            assert hostd.kvm_view(d) == "regular file, not writable", (h.name, hostd.kvm_view(d))


def test_lab_down_leaves_nothing(up_lab):
    st, _ = up_lab
    qemu_pids = []
    for h in st.hosts.values():
        qemu_pids += [p for p in netns.pids_in(h.namespace)]
    daemon_pids = [local.host_daemon(h).pid() for h in st.hosts.values()]
    removed = lab.down(LAB)
    assert any("namespace" in r for r in removed) and any("VM sql1" in r for r in removed)
    assert residue_report(LAB) == {"namespaces": [], "cgroups": [], "processes": []}
    for pid in qemu_pids + daemon_pids:
        assert not _alive(pid), f"pid {pid} still running"
    assert not state.lab_root(LAB).exists() or not any(
        p.name != "dr-site" for p in state.lab_root(LAB).iterdir())
    assert lab.down(LAB) == [], "a second down finds nothing left"


def _alive(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return stat != "Z"
