"""Endpoints of selector-less virtual Services, copied to the host with pod references renamed.

A Service with a selector gets a translated selector on the host, so the host's own endpoint
controllers compute its endpoints from the tenant's host pods. A Service WITHOUT a selector has
endpoints the tenant (or a tenant controller) writes by hand; only those are copied, with each
`targetRef` to a virtual pod pointing at that pod's host copy instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..controller import SyncContext, virtual_key
from ..informers import Informer
from ..kube.resources import ENDPOINTS, SERVICES, ResourceType
from ..translate import metadata
from .base import MirroredKind

Obj = dict[str, Any]

# Set by the leader-election of old controllers on Endpoints objects: meaningless on the host.
DROPPED_ANNOTATIONS = ("control-plane.alpha.kubernetes.io/leader",)


class Endpoints(MirroredKind):
    resource: ClassVar[str] = "endpoints"
    rtype: ClassVar[ResourceType] = ENDPOINTS

    services: Informer

    def setup(self, ctx: SyncContext) -> None:
        super().setup(ctx)
        self.services = ctx.virtual.informer(SERVICES)
        self.services.add_listener(self._on_service)

    def _on_service(self, old: Obj | None, new: Obj | None) -> None:
        service = new or old
        if service is not None:
            self.queue_add(virtual_key(service))

    def wanted(self, virtual: Obj) -> bool:
        key = virtual_key(virtual)
        if key == "default/kubernetes":
            return False
        service = self.services.store.get(key)
        return service is not None and not (service.get("spec") or {}).get("selector")

    def _subsets(self, virtual: Obj) -> list[Obj]:
        namespace = virtual["metadata"]["namespace"]
        subsets = []
        for subset in virtual.get("subsets") or []:
            translated = dict(subset)
            for field in ("addresses", "notReadyAddresses"):
                if field not in subset:
                    continue
                addresses = []
                for address in subset[field]:
                    address = dict(address)
                    ref = address.get("targetRef")
                    if ref and ref.get("kind") == "Pod":
                        address["targetRef"] = {
                            "kind": "Pod",
                            "name": self.ctx.host_name(ref["name"], ref.get("namespace") or namespace),
                            "namespace": self.ctx.host_namespace,
                        }
                    elif ref:
                        address.pop("targetRef")
                    address.pop("nodeName", None)  # virtual node names are host node names, but unverified
                    addresses.append(address)
                translated[field] = addresses
            subsets.append(translated)
        return subsets

    def desired_host(self, virtual: Obj) -> Obj:
        annotations = {
            k: v
            for k, v in (virtual["metadata"].get("annotations") or {}).items()
            if k not in DROPPED_ANNOTATIONS
        }
        return {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": self.host_metadata(virtual, annotations=annotations),
            "subsets": self._subsets(virtual),
        }

    async def update(self, virtual: Obj, host: Obj) -> None:
        desired = self.desired_host(virtual)
        patch: Obj = {}
        if (host.get("subsets") or []) != desired["subsets"]:
            patch["subsets"] = desired["subsets"]
        meta_patch = metadata.metadata_patch(desired["metadata"], host["metadata"])
        if meta_patch is not None:
            patch["metadata"] = meta_patch
        if patch:
            await self.patch_host(host, patch)
