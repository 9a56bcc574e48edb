"""Ingresses (networking.k8s.io/v1): backends and TLS secrets renamed, status back from the host.

Annotations are kept as the tenant wrote them, so controllers on the host (an ingress controller,
cert-manager) act on the host copy; the TLS secrets they name are synced while the ingress
references them (syncer/kinds/configmaps.py, Secrets). `ingressClassName` passes through: the
classes are the host's.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from ..kube.resources import INGRESSES, ResourceType
from ..translate import metadata
from .base import MirroredKind

Obj = dict[str, Any]


def translate_ingress_spec(spec: Obj, rename: Any) -> Obj:
    """The host spec: every backend service / resource name and TLS secret name through `rename`."""
    out = copy.deepcopy(spec)

    def backend(b: Obj | None) -> None:
        if not b:
            return
        if b.get("service", {}).get("name"):
            b["service"]["name"] = rename(b["service"]["name"])
        if b.get("resource", {}).get("name"):
            b["resource"]["name"] = rename(b["resource"]["name"])

    backend(out.get("defaultBackend"))
    for rule in out.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            backend(path.get("backend"))
    for tls in out.get("tls") or []:
        if tls.get("secretName"):
            tls["secretName"] = rename(tls["secretName"])
    return out


class Ingresses(MirroredKind):
    resource: ClassVar[str] = "ingresses"
    rtype: ClassVar[ResourceType] = INGRESSES

    def desired_host(self, virtual: Obj) -> Obj:
        namespace = virtual["metadata"]["namespace"]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": self.host_metadata(virtual),
            "spec": translate_ingress_spec(
                virtual.get("spec") or {}, lambda name: self.ctx.host_name(name, namespace)
            ),
        }

    async def after_create(self, virtual: Obj, host: Obj) -> None:
        await self._status_back(virtual, host)

    async def _status_back(self, virtual: Obj, host: Obj) -> None:
        vlb = (virtual.get("status") or {}).get("loadBalancer") or {}
        hlb = (host.get("status") or {}).get("loadBalancer") or {}
        if vlb != hlb:
            meta = virtual["metadata"]
            await self.ctx.virtual_client.patch(
                INGRESSES,
                meta["name"],
                {"status": {"loadBalancer": hlb}},
                meta["namespace"],
                subresource="status",
            )

    async def update(self, virtual: Obj, host: Obj) -> None:
        desired = self.desired_host(virtual)
        patch: Obj = {}
        if (host.get("spec") or {}) != desired["spec"]:
            patch["spec"] = desired["spec"]
        meta_patch = metadata.metadata_patch(desired["metadata"], host["metadata"])
        if meta_patch is not None:
            patch["metadata"] = meta_patch
        if patch:
            if "spec" in patch:
                # A merge patch would keep fields the tenant removed; replace the spec wholesale.
                body = copy.deepcopy(host)
                body["spec"] = desired["spec"]
                if meta_patch is not None:
                    body["metadata"] = {**host["metadata"], **_apply_map_patch(host["metadata"], meta_patch)}
                await self.ctx.host_client.replace(INGRESSES, body)
            else:
                await self.patch_host(host, patch)
        await self._status_back(virtual, host)


def _apply_map_patch(meta: Obj, patch: Obj) -> Obj:
    out: Obj = {}
    for field in ("labels", "annotations"):
        merged = dict(meta.get(field) or {})
        for key, value in (patch.get(field) or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        out[field] = merged
    return out
