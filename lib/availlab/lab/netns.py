"""Network namespaces and links of the local lab, through netlink (pyroute2).

Every lab address lives inside a lab namespace: the switch namespace holds only a bridge and the
switch ends of veth pairs, each host namespace holds `br0` (guests' taps join it) with the host's
address, the client namespace holds the address SQL clients use. Veth pairs are created directly
between lab namespaces, so the root namespace never sees a lab link, address or route, and no lab
namespace has a default route: nothing in the lab can reach outside it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import functools
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pyroute2 import NetlinkError, NetNS, netns

from .. import names
from ..errors import LabError

NETNS_DIR = Path("/run/netns")
SWITCH_BRIDGE = "sw0"
HOST_BRIDGE = "br0"
UPLINK = "eth0"


T = TypeVar("T")


def _off_loop(fn: Callable[..., T]) -> Callable[..., T]:
    """pyroute2 >= 0.9 runs netlink on asyncio; inside a Jupyter kernel (a runbook) this thread
    already runs an event loop, so do the call in a short-lived thread that has none."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(fn, *args, **kwargs).result()

    return wrapper


def ns_name(lab: str, role: str) -> str:
    return f"availlab-{lab}-{role}"


@_off_loop
def list_lab_namespaces(lab: str) -> list[str]:
    # exactly availlab-<lab>-<role> (roles have no '-'): lab "a" never matches lab "a-b"'s namespaces
    own = re.compile(re.escape(ns_name(names.lab_name(lab), "")) + r"[a-z0-9]+")
    return sorted(n for n in netns.listnetns() if own.fullmatch(n))


# Run inside each lab namespace: if br_netfilter is loaded on the machine (Docker loads it), Linux
# hands bridged frames to netfilter; a lab switch must forward like a plain switch whatever else
# the machine runs. And a connect to a peer that does not answer (a pulled cable) gives up after
# 15 s (tcp_syn_retries 3: 1+2+4+8 s) instead of Linux's ~2 min, so a migration over a dead link
# fails in seconds, near its own timeout. These sysctls are per namespace: the machine's own
# settings are not touched.
_PLAIN_BRIDGE = ("for f in /proc/sys/net/bridge/bridge-nf-call-iptables "
                 "/proc/sys/net/bridge/bridge-nf-call-ip6tables /proc/sys/net/bridge/bridge-nf-call-arptables; "
                 "do [ -w \"$f\" ] && echo 0 > \"$f\"; done; "
                 "echo 3 > /proc/sys/net/ipv4/tcp_syn_retries; true")


def create(name: str) -> None:
    _create(name)
    subprocess.run(["ip", "netns", "exec", name, "sh", "-c", _PLAIN_BRIDGE], check=True,
                   capture_output=True)


@_off_loop
def _create(name: str) -> None:
    if name not in netns.listnetns():
        netns.create(name)
    with NetNS(name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


@_off_loop
def remove(name: str) -> None:
    if name in netns.listnetns():
        netns.remove(name)


def _index(ns: NetNS, ifname: str) -> int | None:
    found = ns.link_lookup(ifname=ifname)
    return found[0] if found else None


@_off_loop
def ensure_bridge(ns_name_: str, bridge: str) -> None:
    with NetNS(ns_name_) as ns:
        if _index(ns, bridge) is None:
            ns.link("add", ifname=bridge, kind="bridge")
        ns.link("set", index=_index(ns, bridge), state="up")


@_off_loop
def connect(switch_ns: str, port: str, peer_ns: str, *, peer_bridge: str | None = None,
            bridge_mac: str | None = None, address: str | None = None, prefixlen: int = 24) -> None:
    """Cable peer_ns to the switch: veth `port` on the switch bridge, `eth0` in peer_ns.

    With peer_bridge, eth0 joins that bridge and the address goes on the bridge (a hypervisor
    host: guests' taps join the same bridge); otherwise the address goes on eth0 (the client).
    """
    if len(port) > 15:
        raise LabError(f"interface name {port!r} is longer than 15 characters")
    with NetNS(peer_ns) as ns:
        cabled = _index(ns, UPLINK) is not None
    with NetNS(switch_ns) as sw:
        stale = _index(sw, port)
        if stale is not None and not cabled:
            # its other end went with a namespace just removed (a host restarted): the kernel frees
            # such a pair later, asynchronously, so it is removed here, not found half-alive
            try:
                sw.link("del", index=stale)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise
        if stale is None or not cabled:
            sw.link("add", ifname=port, kind="veth", peer={"ifname": UPLINK, "net_ns_fd": peer_ns})
        sw.link("set", index=_index(sw, port), master=_index(sw, SWITCH_BRIDGE), state="up")
    with NetNS(peer_ns) as ns:
        up = _index(ns, UPLINK)
        if up is None:
            raise LabError(f"{peer_ns}: veth end {UPLINK} did not arrive from {switch_ns}")
        target: int | None = up
        if peer_bridge:
            if _index(ns, peer_bridge) is None:
                ns.link("add", ifname=peer_bridge, kind="bridge")
            target = _index(ns, peer_bridge)
            if bridge_mac:  # fixed: a port joining later must never change the bridge's MAC
                ns.link("set", index=target, address=bridge_mac)
            ns.link("set", index=up, master=target, state="up")
        if address and not ns.get_addr(index=target, address=address):
            ns.addr("add", index=target, address=address, prefixlen=prefixlen)
        ns.link("set", index=target, state="up")


@_off_loop
def set_link(name: str, ifname: str, up: bool) -> None:
    """Take one link of a namespace down or up (a cable pulled and put back)."""
    with NetNS(name) as ns:
        idx = _index(ns, ifname)
        if idx is None:
            raise LabError(f"{name}: no link {ifname}")
        ns.link("set", index=idx, state="up" if up else "down")


@_off_loop
def routes(name: str) -> list[dict]:
    """IPv4 routes of a namespace (main table) as dicts: dst, dst_len, gateway, oif."""
    with NetNS(name) as ns:
        out = []
        for r in ns.get_routes(family=2, table=254):
            out.append({"dst": r.get("dst"), "dst_len": r.get("dst_len"),
                        "gateway": r.get("gateway"), "oif": r.get("oif")})
        return out


@_off_loop
def addresses(name: str) -> list[str]:
    with NetNS(name) as ns:
        return [f"{a.get('address')}/{a.get('prefixlen')}" for a in ns.get_addr(family=2)]


@_off_loop
def links(name: str) -> list[str]:
    with NetNS(name) as ns:
        return [link.get("ifname") for link in ns.get_links()]


@_off_loop
def snapshot(name: str) -> dict:
    """Links (state, master) and IPv4 neighbours of a namespace: evidence when traffic fails."""
    with NetNS(name) as ns:
        by_index = {link["index"]: link.get("ifname") for link in ns.get_links()}
        links_ = [{"ifname": link.get("ifname"), "state": link.get("state"),
                   "master": by_index.get(link.get("master")), "mac": link.get("address")}
                  for link in ns.get_links()]
        neigh = [{"ip": n.get("dst"), "mac": n.get("lladdr"), "state": n["state"],
                  "dev": by_index.get(n["ifindex"])} for n in ns.get_neighbours(family=2)]
    return {"links": links_, "neighbours": neigh}


def _inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


_CLONE_NEWNET = 0x40000000
_SO_NETNS_COOKIE = 71  # Linux 5.14 and later


def cookie_of(name: str) -> int | None:
    """The namespace's identity over time: the cookie the kernel gives each network namespace
    once and never again. Its inode number is no such proof: the kernel reuses it once the old
    namespace is gone (seen: a host restarted, its namespace made again, the same inode). Read
    from a thread of its own that enters the namespace (setns moves only the calling thread)
    and ends there; None when the namespace or the kernel's support is missing."""
    import ctypes
    import socket
    import sys
    import threading

    found: list[int] = []

    def look() -> None:
        try:
            fd = os.open(NETNS_DIR / name, os.O_RDONLY)
        except OSError:
            return
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
                return
            with socket.socket() as s:
                found.append(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8), sys.byteorder))
        except OSError:
            return
        finally:
            os.close(fd)

    t = threading.Thread(target=look, name=f"netns-cookie-{name}")
    t.start()
    t.join()
    return found[0] if found else None


def pids_in(name: str) -> list[int]:
    """Processes whose network namespace is this lab namespace (started by us inside it)."""
    target = _inode(NETNS_DIR / name)
    if target is None:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _inode(entry / "ns" / "net") == target:
            found.append(int(entry.name))
    return sorted(found)
