"""Fake virtual nodes: a Node named after the host node exists while a virtual pod is bound to it.

The virtual cluster has no kubelets and no scheduler. When the host scheduler places a synced pod,
the pod syncer binds the virtual pod to a node of the same name, which must exist first; this kind
creates it on demand (`ensure`) and deletes it once no virtual pod uses it. Only nodes carrying our
fake-node label are ever deleted, so a tenant's own Node objects are left alone.

Addresses are the ClusterIP of the syncer's host Service (a loopback address in tests): anything
that dials a virtual node's kubelet reaches the syncer, never a host kubelet directly.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Iterable
from typing import Any, ClassVar

from ..controller import SyncContext
from ..informers import Informer
from ..kube.client import ApiError
from ..kube.resources import NODES, PODS
from ..translate.names import RESERVED_PREFIX
from .base import delete_exactly

log = logging.getLogger(__name__)

Obj = dict[str, Any]
FAKE_NODE_LABEL = RESERVED_PREFIX + "fake-node"
NODE_INDEX = "node-name"
# A node ensured for a pod is in use before the binding reaches our pod store; do not delete it as
# "unused" within this window.
ENSURE_GRACE_SECONDS = 10.0


def _pod_node(pod: Obj) -> Iterable[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [node] if node else []


def fake_node(name: str, address: str, kubelet_port: int) -> Obj:
    capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                FAKE_NODE_LABEL: "true",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def fake_node_status(address: str, kubelet_port: int) -> Obj:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    conditions = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "fake node of a virtual cluster",
        },
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
        {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID"},
    ]
    for condition in conditions:
        condition["lastHeartbeatTime"] = now
        condition["lastTransitionTime"] = now
    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": conditions,
        "addresses": [{"type": "InternalIP", "address": address}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": "v1.37.1",
            "kubeProxyVersion": "",
            "osImage": "vcluster-py fake node",
            "kernelVersion": "",
            "containerRuntimeVersion": "",
            "bootID": "",
            "machineID": "",
            "systemUUID": "",
        },
    }


class FakeNodes:
    resource: ClassVar[str] = "nodes"

    ctx: SyncContext
    pods: Informer
    nodes: Informer

    def setup(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self._ensured_at: dict[str, float] = {}
        self.pods = ctx.virtual.informer(PODS, indexers={NODE_INDEX: _pod_node})
        self.nodes = ctx.virtual.informer(NODES, label_selector=f"{FAKE_NODE_LABEL}=true")
        self.pods.add_listener(self._on_pod)
        self.nodes.add_listener(self._on_node)

    def _on_pod(self, old: Obj | None, new: Obj | None) -> None:
        for pod in (old, new):
            for node in _pod_node(pod or {}):
                self.ctx.enqueue(self.resource, node)

    def _on_node(self, old: Obj | None, new: Obj | None) -> None:
        node = new or old
        if node is not None:
            self.ctx.enqueue(self.resource, node["metadata"]["name"])

    def all_keys(self) -> Iterable[str]:
        keys = set(self.nodes.store.keys())
        for pod in self.pods.store.list():
            keys.update(_pod_node(pod))
        return keys

    def in_use(self, name: str) -> bool:
        return bool(self.pods.store.index_keys(NODE_INDEX, name))

    async def ensure(self, name: str) -> None:
        """Make sure the fake node exists (called before binding a pod to it)."""
        self._ensured_at[name] = time.monotonic()
        if self.nodes.store.get(name) is not None:
            return
        address = self.ctx.kube_service_ip or "127.0.0.1"
        try:
            await self.ctx.virtual_client.create(NODES, fake_node(name, address, self.ctx.options.proxy_port))
        except ApiError as err:
            if not err.already_exists:
                raise
            return
        node = await self.ctx.virtual_client.get(NODES, name)
        node["status"] = fake_node_status(address, self.ctx.options.proxy_port)
        await self.ctx.virtual_client.replace_status(NODES, node)
        log.info("fake node created", extra={"node": name})

    async def reconcile(self, key: str) -> None:
        node = self.nodes.store.get(key)
        if self.in_use(key):
            if node is None:
                await self.ensure(key)
            return
        if node is not None:
            since_ensure = time.monotonic() - self._ensured_at.get(key, -ENSURE_GRACE_SECONDS)
            if since_ensure < ENSURE_GRACE_SECONDS:
                self.ctx.queues[self.resource].add_after(key, ENSURE_GRACE_SECONDS - since_ensure)
                return
            self._ensured_at.pop(key, None)
            await delete_exactly(self.ctx.virtual_client, NODES, node, None)
            log.info("fake node deleted", extra={"node": key})
