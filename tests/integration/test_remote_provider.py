"""The remote provider against real libvirt daemons reached over real `qemu+ssh`: the local lab's
hosts stand in for a cluster's hypervisors, each with an sshd (tests/integration/sshcluster.py),
and availlab runs in the lab's client namespace as a management station on the cluster network.
The remote lab checks and records, creates nothing, migrates through the URIs, never touches a
VM its topology does not declare, and `lab down` leaves the hosts exactly as they were."""

from __future__ import annotations

import json
from pathlib import Path

import libvirt
import pytest
import yaml

from availlab import paths
from availlab.errors import UsageError
from availlab.events.migration import live_migrate
from availlab.lab import providers as lab
from availlab.lab import state
from availlab.lab.topology import load_topology
from availlab.scenarios import steps

from .conftest import assert_no_secret, assert_outcomes, clean_lab
from .conftest import cli as _cli
from .conftest import run_runbook as _run_runbook
from .sshcluster import SSHCluster, log_tail

LOCAL = "irl"
POOL = "csv"


def _remote_yaml(tmp: Path, name: str, local: state.LabState, ssh: SSHCluster, *, unsafe: bool,
                 same_host: bool = False) -> Path:
    hosts = list(local.hosts.values())
    doc = {
        "kind": "remote", "name": name,
        "hosts": [{"name": h.name, "uri": ssh.uri(hosts[0].name if same_host else h.name),
                   "migration_address": h.address} for h in hosts],
        "storage": {"pool": POOL, "allow_unsafe_migration": unsafe},
        "vms": [{"name": "sql1", "database": "postgresql", "server": local.vms["sql1"].address,
                 "password_file": str(state.secrets_dir(LOCAL) / "db-password")}],
        "client_namespace": local.client_namespace,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _pools(local: state.LabState, create: bool) -> None:
    """What the cluster's admin has done before availlab arrives: a shared pool on every host,
    here the shared directory that holds the VM's disk."""
    xml = f"<pool type='dir'><name>{POOL}</name><target><path>{_pool_path(local)}</path></target></pool>"
    for h in local.hosts.values():
        conn = libvirt.open(h.uri)
        try:
            if create:
                conn.storagePoolCreateXML(xml, 0)
            else:
                try:
                    conn.storagePoolLookupByName(POOL).destroy()
                except libvirt.libvirtError:
                    pass
        finally:
            conn.close()


def _pool_path(local: state.LabState) -> str:
    return str(Path(local.vms["sql1"].disk).parent)


def _host_facts(local: state.LabState) -> dict:
    out = {}
    for h in local.hosts.values():
        conn = libvirt.open(h.uri)
        try:
            out[h.name] = sorted((d.name(), d.isActive()) for d in conn.listAllDomains(0))
            out[h.name + " pools"] = sorted(p.name() for p in conn.listAllStoragePools(0))
            out[h.name + " volumes"] = sorted((p.name(), v.name()) for p in conn.listAllStoragePools(0)
                                              if p.isActive() for v in p.listAllVolumes(0))
            out[h.name + " undeclared"] = sorted((d.name(), d.state()[0], d.XMLDesc(0))
                                                 for d in conn.listAllDomains(0) if d.name() == PROD)
        finally:
            conn.close()
    return out


# Someone else's VM on the cluster: running on h1, never declared in the remote topology. A tiny
# firmware-only domain (no disk, 32 MiB) is enough: availlab must not move, stop or change it.
PROD = "prod"
PROD_XML = (f"<domain type='qemu'><name>{PROD}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices></devices></domain>")


def _undeclared_domain(local: state.LabState, start: bool) -> None:
    conn = libvirt.open(local.hosts["h1"].uri)
    try:
        if start:
            conn.defineXML(PROD_XML).create()
            return
        try:
            d = conn.lookupByName(PROD)
        except libvirt.libvirtError:
            return
        if d.isActive():
            d.destroy()
        d.undefine()
    finally:
        conn.close()


def _over_ssh(local: state.LabState, code: str, *args: str) -> str:
    """Python run from the client namespace (where the cluster's addresses are): its stdout."""
    import subprocess
    import sys

    p = subprocess.run(["ip", "netns", "exec", local.client_namespace, sys.executable, "-c",
                        "import json, sys\nfrom availlab.lab import state\n" + code, *args],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def _migrate_over_ssh(local: state.LabState, name: str, vm: str, target: str) -> dict:
    """One live_migrate through the remote lab: the migration record as JSON."""
    out = _over_ssh(local, "from availlab.events.migration import live_migrate\n"
                           "r = live_migrate(state.require_up(sys.argv[1]), sys.argv[2], sys.argv[3])\n"
                           "print(json.dumps({'ok': r.ok, 'flags': r.flags, 'error': r.error}))\n", name, vm, target)
    return json.loads(out.strip().splitlines()[-1])


def test_remote_cluster_checks_migrates_by_uri_and_leaves_the_hosts_alone(tmp_path, figures):
    with clean_lab(LOCAL):
        steps.ensure_vm(steps.ensure_lab(LOCAL, 2), "sql1", "h1")
        local = state.require_up(LOCAL)
        _pools(local, create=True)
        _undeclared_domain(local, start=True)
        ssh = SSHCluster(local)

        def cli(name: str, *args: str):  # from the cluster network, as a management station
            return _cli(name, *args, netns=local.client_namespace)

        def run_runbook(name: str, runbook: Path, *params: str):
            return _run_runbook(name, runbook, *params, netns=local.client_namespace)

        try:
            ssh.start()
            before = _host_facts(local)
            assert before["h1 undeclared"] and before["h1 undeclared"][0][1] == libvirt.VIR_DOMAIN_RUNNING

            # discover: a topology written from the hosts' daemons over read-only connections;
            # it names the shared pool and lists both domains, declaring neither
            found = tmp_path / "found.yaml"
            r = cli("irdisc", "lab", "discover", "--uri", ssh.uri("h1"), "--uri", ssh.uri("h2"),
                    "--name", "irdisc", "-o", str(found))
            assert r.returncode == 0, r.stderr[-2000:]
            topo, text = load_topology(found), found.read_text()
            assert [h.uri for h in topo.hosts] == [ssh.uri("h1"), ssh.uri("h2")] and topo.vms == []
            assert topo.storage.pool == POOL and "# - name: sql1" in text and "disks on the pool" in text
            assert f"# - name: {PROD}" in text and not state.state_file("irdisc").exists()
            assert _host_facts(local) == before

            # two names for one host: refused, naming both, and nothing recorded
            r = cli("irdup", "lab", "up", "--config", str(_remote_yaml(tmp_path, "irdup", local, ssh, unsafe=True,
                                                                        same_host=True)))
            assert r.returncode == 1 and "report the same host UUID" in r.stderr, r.stderr[-2000:]
            assert "h1" in r.stderr and "h2" in r.stderr and not state.state_file("irdup").exists()

            # a cluster may not take over a local lab's name, nor a local lab a cluster's
            r = cli(LOCAL, "lab", "up", "--config", str(_remote_yaml(tmp_path, "iru", local, ssh, unsafe=True)))
            assert r.returncode == 1 and f"lab '{LOCAL}' is a local lab" in r.stderr, r.stderr[-2000:]
            assert state.require_up(LOCAL).provider == "local"

            # a reachable cluster: checked and recorded, nothing created
            r = cli("iru", "lab", "up", "--config", str(_remote_yaml(tmp_path, "iru", local, ssh, unsafe=True)))
            assert r.returncode == 0, r.stderr[-2000:]
            st = state.require_up("iru")
            assert st.provider == "remote" and set(st.facts["host_uuids"]) == {"h1", "h2"}
            assert len(set(st.facts["host_uuids"].values())) == 2
            assert set(st.facts["versions"]["h1"]) == {"libvirt", "hypervisor"}
            assert set(st.facts["cpu_compare"].values()) <= {"identical", "superset"} and st.facts["cpu_compare"]
            assert set(st.facts["vm_cpu"]["sql1"]) == {"h1", "h2"}
            assert set(st.facts["vm_cpu"]["sql1"].values()) <= {"identical", "superset"}  # qemu64 under TCG
            assert st.facts["storage"] == {"pool": POOL, "path": _pool_path(local)}
            assert st.facts["vm_disks"]["sql1"]["disks"] == [local.vms["sql1"].disk]
            assert _host_facts(local) == before
            status = json.loads(cli("iru", "lab", "status", "--json").stdout)
            assert {h["name"]: h["daemon"] for h in status["hosts"]} == {"h1": "remote", "h2": "remote"}
            assert [(v["name"], v["state"]) for v in status["vms"]] == [("sql1", "running")]

            # the live-migration runbook through the remote lab: URIs only
            r, run_dir = run_runbook("iru", paths.project_root() / "runbooks" / "10-live-migration.ipynb",
                                     "warmup_s", "1.0", "cooldown_s", "1.0", "settle_s", "1.0")
            doc, timings = assert_outcomes(r, run_dir)
            f = doc["figures"]
            assert f["failed_ops"] == 0 and f["lost_writes"] == 0
            assert len(f["migrations"]) == 2 and all(m["ok"] for m in f["migrations"])
            # the password came from the cluster's password file: in no artefact, nor in the state
            assert_no_secret(LOCAL, run_dir, state.state_file("iru"))

            # a watch of the cluster (issue 30): its watcher's connections over qemu+ssh are
            # libvirt's read-only ones, which refuse a change to any VM, declared or not
            w = cli("iru", "watch", "--vm", "sql1", "--for", "2s", "--warmup", "0s", "--cooldown", "0s")
            assert w.returncode == 0 and "verdict: PASS" in w.stdout, w.stderr[-3000:]
            wdir = Path(w.stdout.split("run folder: ")[1].split()[0])
            watched = json.loads((wdir / "results.json").read_text())["figures"]["watcher"]
            assert len(watched["where"]) == 1 and set(watched["where"].values()) == {"running"}, watched
            ro = _over_ssh(local, "from availlab.lab.providers import provider\n"
                                  "with provider(state.require_up(sys.argv[1])).observe('h1') as hv:\n"
                                  "    for vm in sys.argv[2:]:\n"
                                  "        try:\n            hv.resume(vm)\n"
                                  "        except Exception as exc:\n            print('refused:', exc)\n",
                           "iru", "sql1", PROD)
            assert ro.count("refused:") == 2 and ro.count("read only") + ro.count("read-only") >= 2, ro

            # the undeclared VM is read-only to availlab, whatever the route to it
            prod_before = _host_facts(local)["h1 undeclared"]
            r = cli("iru", "vm", "delete", PROD)
            assert r.returncode == 2 and "remote cluster" in r.stderr, r.stderr[-2000:]
            r = cli("iru", "restore", "sql1-20260101T000000000-full", "--host", "h1", "--name", PROD, "--replace")
            assert r.returncode == 2 and "remote cluster" in r.stderr, r.stderr[-2000:]
            with pytest.raises(UsageError, match="not declared"):
                live_migrate(state.require_up("iru"), PROD, "h2")
            guarded = _over_ssh(local, "from availlab.lab.providers import provider\n"
                                       "with provider(state.require_up(sys.argv[1])).connect('h1') as hv:\n"
                                       "    for change in (hv.destroy, hv.undefine, hv.resume):\n"
                                       "        try:\n            change(sys.argv[2])\n"
                                       "        except Exception as exc:\n            print('refused:', exc)\n",
                                "iru", PROD)
            assert guarded.count("refused:") == 3 and "not declared" in guarded, guarded
            if lab.running_host(state.require_up(LOCAL), "sql1") != "h1":  # drain the host prod runs on
                assert live_migrate(state.require_up(LOCAL), "sql1", "h1").ok
            rb10 = paths.project_root() / "runbooks" / "10-live-migration.ipynb"
            for params, words in ((("plan", "drain", "host", "h1"), f"it also runs {PROD}"),
                                  (("dirty_memory_mib", "64"), "no memory dirtier")):
                r, run_dir = run_runbook("iru", rb10, *params)
                assert r.returncode != 0 and words in (r.stdout + r.stderr), (params, r.stderr[-2000:])
                assert not (run_dir / "results.json").exists() or "PASS" not in (run_dir / "results.json").read_text()
                assert _host_facts(local)["h1 undeclared"] == prod_before, params

            # without allow_unsafe_migration availlab does not pass UNSAFE: libvirt judges the
            # storage (a plain directory here) and the refusal says what to do
            r = cli("irs", "lab", "up", "--config", str(_remote_yaml(tmp_path, "irs", local, ssh, unsafe=False)))
            assert r.returncode == 0, r.stderr[-2000:]
            strict = state.require_up("irs")
            r = cli("irs", "lab", "up")  # the default (local) topology under the cluster's name
            assert r.returncode == 1 and "lab 'irs' is a remote cluster" in r.stderr, r.stderr[-2000:]
            here = lab.running_host(state.require_up(LOCAL), "sql1")
            rec = _migrate_over_ssh(local, "irs", "sql1", next(h for h in strict.hosts if h != here))
            assert not rec["ok"] and "UNSAFE" not in rec["flags"]
            assert "does not recognise this storage as shared" in rec["error"]
            assert lab.running_host(state.require_up(LOCAL), "sql1") == here

            # down forgets the remote labs; the hosts and their VM are as they were
            for name in ("iru", "irs"):
                d = cli(name, "lab", "down")
                assert d.returncode == 0 and "the hosts were not touched" in d.stdout
                assert not state.state_file(name).exists()
            assert lab.health(state.require_up(LOCAL)) == []
            assert lab.locate_vm(state.require_up(LOCAL), "sql1")[1] == "running"
            assert _host_facts(local) == before  # same domains, same states, same pools
            figures["remote provider"] = (f"2 migrations via qemu+ssh, {f['ops']} ops, {f['failed_ops']} failed, "
                                          f"{f['lost_writes']} lost; cpu {st.facts['cpu_compare']}; {timings}")
        except BaseException:
            print(log_tail(ssh))
            raise
        finally:
            ssh.stop()
            _undeclared_domain(local, start=False)
            _pools(local, create=False)
            for name in ("iru", "irs", "irdup"):
                if state.state_file(name).exists():
                    cli(name, "lab", "down")
