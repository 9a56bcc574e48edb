"""Services: the host copy selects only this tenant's pods, and its ClusterIP is the virtual one.

The virtual control plane runs with the host's service CIDR, so one IP can be valid on both sides.
We first ask the host for the IP the virtual API server already allocated (usually free on the host:
both allocate from the same range but the host rarely has many services in it); only if the host
refuses do we let it choose and then recreate the virtual service with the host's IP — the
recreation vcluster always does, here kept for the collision case. Node ports follow the same rule.

`spec.externalIPs` never reaches the host (a tenant could otherwise capture traffic for any IP); a
Warning event says so. The virtual `default/kubernetes` Service is not copied: it is pointed at the
ClusterIP of the syncer's own host Service, so in-pod clients reach the virtual API through the proxy.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from typing import Any, ClassVar

from ..controller import split_key
from ..kube.client import ApiError
from ..kube.resources import SERVICES, ResourceType
from ..translate import metadata, names
from ..translate.metadata import Ownership
from .base import SYNC_ERROR, MirroredKind, delete_exactly

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# Spec fields copied V→H as they are (the rest is translated or deliberately dropped).
COPIED_FIELDS = (
    "type",
    "externalName",
    "sessionAffinity",
    "sessionAffinityConfig",
    "publishNotReadyAddresses",
    "externalTrafficPolicy",
    "internalTrafficPolicy",
    "loadBalancerClass",
    "loadBalancerSourceRanges",
    "allocateLoadBalancerNodePorts",
    "ipFamilyPolicy",
    "ipFamilies",
)
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def _ports_without_node_ports(ports: Iterable[Obj]) -> list[Obj]:
    return [{k: v for k, v in p.items() if k != "nodePort"} for p in ports]


def _real_ip(ip: object) -> str | None:
    return str(ip) if ip and ip != "None" else None


def host_spec(virtual: Obj, vcluster: str, *, with_ip: bool = True, with_node_ports: bool = True) -> Obj:
    """The host spec of a virtual service (a plain function: the proxy's service create uses it too)."""
    vspec = virtual.get("spec") or {}
    namespace = virtual["metadata"]["namespace"]
    spec: Obj = {k: vspec[k] for k in COPIED_FIELDS if k in vspec}
    ports = vspec.get("ports") or []
    spec["ports"] = (
        ports
        if with_node_ports and vspec.get("type") in NODE_PORT_TYPES
        else _ports_without_node_ports(ports)
    )
    if vspec.get("type") in NODE_PORT_TYPES and with_node_ports and vspec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = vspec["healthCheckNodePort"]
    if vspec.get("selector"):
        spec["selector"] = metadata.host_selector(vspec["selector"], vcluster, namespace)
    if vspec.get("type") != "ExternalName":
        ip = vspec.get("clusterIP")
        if ip == "None":
            spec["clusterIP"] = "None"
        elif with_ip and _real_ip(ip):
            spec["clusterIP"] = ip
            spec["clusterIPs"] = vspec.get("clusterIPs") or [ip]
    return spec


PROXY_PENDING_SECONDS = 60.0
"""How long a host service the proxy created ahead of its virtual service is left alone without one."""


def is_pending_proxy_copy(host: Obj, now: datetime.datetime | None = None) -> bool:
    """A host service the API proxy created first (to get one ClusterIP for both sides), whose virtual
    service is still being created: its object-uid annotation is empty, since no virtual uid existed
    yet. Within PROXY_PENDING_SECONDS it is neither garbage nor a previous incarnation."""
    meta = host.get("metadata") or {}
    if (meta.get("annotations") or {}).get(names.ANN_OBJECT_UID) != "":
        return False
    try:
        created = datetime.datetime.fromisoformat(str(meta.get("creationTimestamp")).replace("Z", "+00:00"))
    except ValueError:
        return False
    now = now or datetime.datetime.now(datetime.UTC)
    return (now - created).total_seconds() < PROXY_PENDING_SECONDS


class Services(MirroredKind):
    resource: ClassVar[str] = "services"
    rtype: ClassVar[ResourceType] = SERVICES

    def desired_spec(self, virtual: Obj, *, with_ip: bool = True, with_node_ports: bool = True) -> Obj:
        return host_spec(virtual, self.ctx.vcluster, with_ip=with_ip, with_node_ports=with_node_ports)

    def desired_host(self, virtual: Obj) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.host_metadata(virtual),
            "spec": self.desired_spec(virtual),
        }

    def wanted(self, virtual: Obj) -> bool:
        return not (
            virtual["metadata"]["namespace"] == "default" and virtual["metadata"]["name"] == "kubernetes"
        )

    def ownership_of(self, host: Obj, namespace: str, name: str, virtual: Obj | None) -> Ownership:
        owned = super().ownership_of(host, namespace, name, virtual)
        if owned is Ownership.PREVIOUS_INCARNATION and (
            (host["metadata"].get("annotations") or {}).get(names.ANN_OBJECT_UID) == ""
        ):
            return Ownership.OURS  # made by the proxy before the virtual uid existed; update() fills it in
        return owned

    async def reconcile(self, key: str) -> None:
        if key == "default/kubernetes":
            await self.sync_kubernetes_service()
            return
        if self.virtual(key) is None:
            namespace, name = split_key(key)
            host = self.host_for(namespace, name)
            if host is not None and is_pending_proxy_copy(host):
                return  # the proxy is creating its virtual service; the drift pass collects leftovers
        await super().reconcile(key)

    async def create(self, virtual: Obj, body: Obj | None = None) -> None:
        if (virtual.get("spec") or {}).get("externalIPs"):
            await self.ctx.recorder.warning(
                virtual, SYNC_ERROR, "spec.externalIPs is not synced to the host cluster"
            )
        body = self.desired_host(virtual)
        with_ip, with_node_ports = True, True
        for _ in range(3):
            try:
                created = await self.ctx.host_client.create(SERVICES, body, self.ctx.host_namespace)
            except ApiError as err:
                message = err.message or ""
                if err.invalid and "already allocated" in message:
                    # The IP or a node port is taken on the host: let the host choose, sync it back.
                    if "nodePort" in message:
                        with_node_ports = False
                    else:
                        with_ip = False
                    body["spec"] = self.desired_spec(
                        virtual, with_ip=with_ip, with_node_ports=with_node_ports
                    )
                    continue
                if err.already_exists:
                    await super().create(virtual, body)  # ownership checks for the collision
                    return
                raise
            await self.after_create(virtual, created)
            return

    async def after_create(self, virtual: Obj, host: Obj) -> None:
        await self.sync_back(virtual, host)

    async def sync_back(self, virtual: Obj, host: Obj) -> bool:
        """Host-allocated values the virtual object must show. True when the virtual side changed."""
        vspec, hspec = virtual.get("spec") or {}, host.get("spec") or {}
        vip, hip = _real_ip(vspec.get("clusterIP")), _real_ip(hspec.get("clusterIP"))
        if hip and vip != hip and vspec.get("type") != "ExternalName":
            await self.recreate_virtual(virtual, hip, hspec.get("ports"))
            return True
        if vspec.get("type") in NODE_PORT_TYPES:
            want_ports = [dict(p) for p in vspec.get("ports") or []]
            host_ports = {
                (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in hspec.get("ports") or []
            }
            changed = False
            for port in want_ports:
                node_port = host_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if node_port and port.get("nodePort") != node_port:
                    port["nodePort"] = node_port
                    changed = True
            patch: Obj = {}
            if changed:
                patch["ports"] = want_ports
            if (
                hspec.get("healthCheckNodePort")
                and vspec.get("healthCheckNodePort") != hspec["healthCheckNodePort"]
            ):
                patch["healthCheckNodePort"] = hspec["healthCheckNodePort"]
            if patch:
                meta = virtual["metadata"]
                await self.ctx.virtual_client.patch(
                    SERVICES, meta["name"], {"spec": patch}, meta["namespace"]
                )
                return True
        vlb = (virtual.get("status") or {}).get("loadBalancer") or {}
        hlb = (host.get("status") or {}).get("loadBalancer") or {}
        if vlb != hlb:
            meta = virtual["metadata"]
            await self.ctx.virtual_client.patch(
                SERVICES,
                meta["name"],
                {"status": {"loadBalancer": hlb}},
                meta["namespace"],
                subresource="status",
            )
            return True
        return False

    async def recreate_virtual(
        self, virtual: Obj, cluster_ip: str, host_ports: list[Obj] | None = None
    ) -> None:
        """Delete and recreate the virtual service with the host's ClusterIP (it is immutable)."""
        meta = virtual["metadata"]
        spec = dict(virtual.get("spec") or {})
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
        if spec.get("type") in NODE_PORT_TYPES and host_ports:
            spec["ports"] = host_ports
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
            "spec": spec,
        }
        log.info(
            "recreating virtual service with the host ClusterIP",
            extra={"service": f"{meta['namespace']}/{meta['name']}", "ip": cluster_ip},
        )
        await delete_exactly(self.ctx.virtual_client, SERVICES, virtual, None)
        await self.ctx.virtual_client.create(SERVICES, body, meta["namespace"])

    async def update(self, virtual: Obj, host: Obj) -> None:
        if await self.sync_back(virtual, host):
            return  # the virtual change comes back as an event; V→H after that
        desired = self.desired_host(virtual)
        hspec = host.get("spec") or {}
        spec_patch: Obj = {}
        for field, value in desired["spec"].items():
            if field in ("clusterIP", "clusterIPs"):
                continue  # immutable, and equal by now
            if hspec.get(field) != value:
                spec_patch[field] = value
        if "selector" not in desired["spec"] and hspec.get("selector"):
            spec_patch["selector"] = None
        patch: Obj = {}
        if spec_patch:
            patch["spec"] = spec_patch
        meta_patch = metadata.metadata_patch(desired["metadata"], host["metadata"])
        if meta_patch is not None:
            patch["metadata"] = meta_patch
        if patch:
            await self.patch_host(host, patch)

    async def sync_kubernetes_service(self) -> None:
        """Point virtual default/kubernetes at the syncer's host Service ClusterIP."""
        virtual = self.virtual("default/kubernetes")
        ip = self.ctx.kube_service_ip
        if virtual is None or not ip:
            return
        if _real_ip((virtual.get("spec") or {}).get("clusterIP")) == ip:
            return
        ports = [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.ctx.options.proxy_port}]
        spec = dict(virtual.get("spec") or {})
        spec["ports"] = ports
        virtual = dict(virtual)
        virtual["spec"] = spec
        await self.recreate_virtual(virtual, ip)
