"""A pod network of the test run's own: pod IPs that are not loopback, yet never leave this machine.

EndpointSlice and Endpoints validation refuses loopback addresses, and every pod IP of the local
host cluster is loopback (kwok's `--cidr=127.244.0.0/16`) because nothing here may dial an address
off the machine. To see real EndpointSlices, a test gets a host Node whose `spec.podCIDR` is a
documentation range (kwok gives the pods on that node IPs from it) and that range is routed into a
network namespace the test run creates itself and owns:

    root namespace                           netns vcpy-<pid>-<slot>
    <link>.1/30 on vc<pid>s<slot>h  <-veth->  <link>.2/30 on vc<pid>s<slot>n, lo up
    route <pod CIDR> via <link>.2             local route <pod CIDR> dev lo

So a connection to a pod IP from anywhere on the machine goes down the veth and ends at the
namespace's own loopback (a reset: nothing listens there); the namespace has no other interface and
no default route. Nothing in the tests dials pod IPs anyway; the routes make sure that a stray dial
(the API server's pods/proxy, say) cannot leave the machine either.

The ranges are TEST-NET-2 (pod CIDRs) and TEST-NET-3 (veth links). TEST-NET-1 (192.0.2.0/24) is
not used: it can be the machine's own uplink. Before it adds anything, the set-up checks that neither
range overlaps any address or route already on the machine (all routing tables), and picks the first
free slot, so parallel runs do not collide. Set-up failures raise with the command and its stderr;
teardown removes the route, the veth pair and the namespace, and checks that they are gone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml

from controlplane.local.host import _node as kwok_node
from tests.support import Kubectl, eventually

POD_CIDR_RANGE = ipaddress.IPv4Network("198.51.100.0/24")  # TEST-NET-2 (RFC 5737): /27 pod CIDRs
LINK_RANGE = ipaddress.IPv4Network("203.0.113.0/24")  # TEST-NET-3 (RFC 5737): /30 veth links
SLOTS = 8
ROUTED_NETWORK_TAINT = {"key": "vcluster-py.test/routed-network", "value": "true", "effect": "NoSchedule"}


class RoutedNetworkError(AssertionError):
    """Setting up or tearing down the routed network failed (the message has the command's stderr)."""


@dataclass(frozen=True)
class RoutedNetwork:
    netns: str
    host_link: str  # the veth end in the root namespace
    netns_link: str  # the veth end inside the network namespace
    link: ipaddress.IPv4Network  # the /30 of the veth pair
    pod_cidr: ipaddress.IPv4Network  # routed into the namespace, local there

    @property
    def host_address(self) -> ipaddress.IPv4Address:
        return self.link.network_address + 1

    @property
    def netns_address(self) -> ipaddress.IPv4Address:
        return self.link.network_address + 2


def _ip_binary() -> str:
    found = shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise RoutedNetworkError("the routed test network needs iproute2's `ip` command, not found")
    return found


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [_ip_binary(), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RoutedNetworkError(
            f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination of every routing table and every address's network, default route aside."""
    used = []
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            used.append(ipaddress.IPv4Network(dst, strict=False))
    for link in json.loads(_ip("-j", "-4", "addr", "show").stdout or "[]"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet":
                used.append(ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return used


def _free_slot() -> tuple[int, ipaddress.IPv4Network, ipaddress.IPv4Network]:
    used = _networks_in_use()
    pod_cidrs = list(POD_CIDR_RANGE.subnets(new_prefix=27))
    links = list(LINK_RANGE.subnets(new_prefix=30))
    for slot in range(SLOTS):
        pod_cidr, link = pod_cidrs[slot], links[slot]
        if not any(n.overlaps(pod_cidr) or n.overlaps(link) for n in used):
            return slot, pod_cidr, link
    raise RoutedNetworkError(
        f"no free slot for a routed test network: {POD_CIDR_RANGE} / {LINK_RANGE} overlap routes or "
        f"addresses already on this machine: {sorted({str(n) for n in used})}"
    )


def _remove(net: RoutedNetwork) -> list[str]:
    """Remove route, veth pair and namespace (each may already be gone); return what is left over."""
    _ip("route", "del", str(net.pod_cidr), "via", str(net.netns_address), check=False)
    _ip("link", "del", net.host_link, check=False)  # takes the peer in the namespace with it
    _ip("netns", "del", net.netns, check=False)
    left = []
    if net.netns in _ip("netns", "list").stdout.split():
        left.append(f"netns {net.netns}")
    if _ip("link", "show", net.host_link, check=False).returncode == 0:
        left.append(f"link {net.host_link}")
    if any(n.overlaps(net.pod_cidr) or n.overlaps(net.link) for n in _networks_in_use()):
        left.append(f"a route or address in {net.pod_cidr} or {net.link}")
    return left


@contextmanager
def routed_network() -> Iterator[RoutedNetwork]:
    """Create the namespace, the veth pair and the routes; remove them all afterwards, even on failure."""
    slot, pod_cidr, link = _free_slot()
    pid = os.getpid()
    net = RoutedNetwork(
        netns=f"vcpy-{pid}-{slot}",
        host_link=f"vc{pid}s{slot}h",  # interface names: at most 15 characters
        netns_link=f"vc{pid}s{slot}n",
        link=link,
        pod_cidr=pod_cidr,
    )
    host_side = f"{net.host_address}/{link.prefixlen}"
    netns_side = f"{net.netns_address}/{link.prefixlen}"
    try:
        _ip("netns", "add", net.netns)
        _ip("link", "add", net.host_link, "type", "veth", "peer", "name", net.netns_link, "netns", net.netns)
        _ip("-n", net.netns, "link", "set", "lo", "up")
        _ip("-n", net.netns, "addr", "add", netns_side, "dev", net.netns_link)
        _ip("-n", net.netns, "link", "set", net.netns_link, "up")
        _ip("-n", net.netns, "route", "add", "local", str(pod_cidr), "dev", "lo")
        _ip("addr", "add", host_side, "dev", net.host_link)
        _ip("link", "set", net.host_link, "up")
        _ip("route", "add", str(pod_cidr), "via", str(net.netns_address), "dev", net.host_link)
        # Prove where a dial to a pod IP would go, without sending anything: `ip route get` only asks.
        probe = str(pod_cidr.network_address + 1)
        outside = json.loads(_ip("-j", "route", "get", probe).stdout)[0]
        inside = json.loads(_ip("-n", net.netns, "-j", "route", "get", probe).stdout)[0]
        if outside.get("dev") != net.host_link or inside.get("type") != "local":
            raise RoutedNetworkError(f"{probe} is not routed into {net.netns}: {outside} / {inside}")
    except BaseException:
        _remove(net)
        raise
    try:
        yield net
    finally:
        left = _remove(net)
        if left:
            raise RoutedNetworkError(f"left behind after teardown: {', '.join(left)}")


def _pods_on(kubectl: Kubectl, node: str) -> list[dict[str, Any]]:
    out = kubectl("get", "pods", "-A", f"--field-selector=spec.nodeName={node}", "-o", "json")
    return json.loads(out.stdout)["items"]  # type: ignore[no-any-return]


@contextmanager
def routed_node(kubectl: Kubectl, name: str, pod_cidr: ipaddress.IPv4Network) -> Iterator[str]:
    """A kwok Node of the host cluster whose pods get IPs from `pod_cidr`, tainted so that only pods
    that tolerate ROUTED_NETWORK_TAINT land on it. Afterwards: cordoned, its pods deleted, then it goes.
    """
    node = kwok_node(name, 110)
    node["spec"] = {"podCIDR": str(pod_cidr), "podCIDRs": [str(pod_cidr)], "taints": [ROUTED_NETWORK_TAINT]}
    kubectl("create", "-f", "-", stdin=yaml.safe_dump(node))
    try:

        def ready() -> bool:
            got = json.loads(kubectl("get", "node", name, "-o", "json").stdout)
            conditions = got.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        eventually(ready, timeout=60, what=f"node {name} Ready (kwok)")
        yield name
    finally:
        kubectl("cordon", name, check=False)  # replacement pods stay Pending instead of landing here
        for pod in _pods_on(kubectl, name):
            meta = pod["metadata"]
            kubectl("delete", "pod", meta["name"], "-n", meta["namespace"], "--wait=false", check=False)
        try:
            eventually(lambda: not _pods_on(kubectl, name), timeout=60, what=f"pods on {name} deleted")
        finally:
            for pod in _pods_on(kubectl, name):  # only if kwok did not finish them: do not leave any
                meta = pod["metadata"]
                kubectl("delete", "pod", meta["name"], "-n", meta["namespace"], "--force", "--grace-period=0")
            kubectl("delete", "node", name, "--ignore-not-found")
