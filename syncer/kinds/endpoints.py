"""Endpoints of selector-less virtual Services, copied to the host with pod references renamed.

A Service with a selector gets a translated selector on the host, so the host's own endpoint
controllers compute its endpoints from the tenant's host pods. A Service WITHOUT a selector has
endpoints the tenant (or a tenant controller) writes by hand; only those are copied, with each
`targetRef` to a virtual pod pointing at that pod's host copy instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ..controller import SyncContext, virtual_key
from ..informers import Informer
from ..kube.resources import ENDPOINTS, SERVICES, ResourceType
from ..translate import metadata
from .base import MirroredKind

Obj = dict[str, Any]

# Set by the leader-election of old controllers on Endpoints objects: meaningless on the host.
DROPPED_ANNOTATIONS = ("control-plane.alpha.kubernetes.io/leader",)


def translate_subsets(
    subsets: list[Obj], *, rename_pod: Callable[[str, str | None], str], host_namespace: str
) -> list[Obj]:
    """Subsets for the host: pod targetRefs point at the host pods; other refs and node names go
    (a virtual node name is a host node name, but nothing guarantees the tenant wrote a real one)."""
    translated_subsets = []
    for subset in subsets:
        translated = dict(subset)
        for field in ("addresses", "notReadyAddresses"):
            if field not in subset:
                continue
            addresses = []
            for original in subset[field]:
                address = dict(original)
                ref = address.get("targetRef")
                if ref and ref.get("kind") == "Pod":
                    address["targetRef"] = {
                        "kind": "Pod",
                        "name": rename_pod(ref["name"], ref.get("namespace")),
                        "namespace": host_namespace,
                    }
                elif ref:
                    address.pop("targetRef")
                address.pop("nodeName", None)
                addresses.append(address)
            translated[field] = addresses
        translated_subsets.append(translated)
    return translated_subsets


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
        return translate_subsets(
            virtual.get("subsets") or [],
            rename_pod=lambda name, ns: self.ctx.host_name(name, ns or namespace),
            host_namespace=self.ctx.host_namespace,
        )

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
