"""ConfigMaps and Secrets: copied to the host only while something that runs there references them.

A tenant's configmaps and secrets are none of the host's business unless a synced pod mounts or
reads them (or, for secrets, an ingress names them for TLS); the host copy goes away as soon as the
last reference does. References come from indexes on the virtual pod (and ingress) stores, so a
pod change re-evaluates exactly the objects it referenced before and after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from ..controller import SyncContext
from ..kube.resources import CONFIGMAPS, INGRESSES, PODS, SECRETS, ResourceType
from ..translate import metadata
from ..translate import pods as pod_translate
from .base import MirroredKind

Obj = dict[str, Any]

CONFIGMAP_REFS = "configmap-refs"
SECRET_REFS = "secret-refs"
INGRESS_SECRET_REFS = "ingress-secret-refs"


def _namespaced(refs: Callable[[Obj], Iterable[str]]) -> Callable[[Obj], Iterable[str]]:
    def index(obj: Obj) -> Iterable[str]:
        namespace = obj["metadata"]["namespace"]
        return [f"{namespace}/{name}" for name in refs(obj)]

    return index


def ingress_tls_secrets(ingress: Obj) -> set[str]:
    return {
        tls["secretName"] for tls in (ingress.get("spec") or {}).get("tls") or [] if tls.get("secretName")
    }


def map_patch(desired: dict[str, Any] | None, current: dict[str, Any] | None) -> dict[str, Any] | None:
    """JSON merge-patch taking one string map to another (`None` removes a key); None when equal."""
    desired, current = desired or {}, current or {}
    patch: dict[str, Any] = {k: v for k, v in desired.items() if current.get(k) != v}
    patch.update({k: None for k in current if k not in desired})
    return patch or None


class _ReferencedData(MirroredKind):
    """What configmaps and secrets share; subclasses name their reference indexes."""

    data_fields: ClassVar[tuple[str, ...]] = ("data", "binaryData")
    ref_indexes: ClassVar[tuple[str, ...]] = ()

    def setup(self, ctx: SyncContext) -> None:
        super().setup(ctx)
        self.pods = ctx.virtual.informer(
            PODS,
            indexers={
                CONFIGMAP_REFS: _namespaced(pod_translate.referenced_configmaps),
                SECRET_REFS: _namespaced(pod_translate.referenced_secrets),
            },
        )
        self.pods.add_listener(self._on_referrer(self.ref_indexes[0], self._pod_refs))

    def _pod_refs(self, pod: Obj) -> Iterable[str]:
        raise NotImplementedError

    def _on_referrer(
        self, index: str, refs: Callable[[Obj], Iterable[str]]
    ) -> Callable[[Obj | None, Obj | None], None]:
        def listener(old: Obj | None, new: Obj | None) -> None:
            keys: set[str] = set()
            for obj in (old, new):
                if obj is not None:
                    namespace = obj["metadata"]["namespace"]
                    keys.update(f"{namespace}/{name}" for name in refs(obj))
            for key in keys:
                self.queue_add(key)

        return listener

    def referrers(self, key: str) -> int:
        return len(self.pods.store.index_keys(self.ref_indexes[0], key))

    def wanted(self, virtual: Obj) -> bool:
        meta = virtual["metadata"]
        return self.referrers(f"{meta['namespace']}/{meta['name']}") > 0

    def desired_host(self, virtual: Obj) -> Obj:
        body: Obj = {
            "apiVersion": "v1",
            "kind": self.kind,
            "metadata": self.host_metadata(virtual),
        }
        for field in (*self.data_fields, "immutable"):
            if field in virtual:
                body[field] = virtual[field]
        return body

    async def update(self, virtual: Obj, host: Obj) -> None:
        desired = self.desired_host(virtual)
        patch: Obj = {}
        for field in self.data_fields:
            change = map_patch(desired.get(field), host.get(field))
            if change is not None:
                patch[field] = change
        if patch and host.get("immutable"):
            await self.delete_host(host)  # an immutable copy cannot change: replace it
            return
        meta_patch = metadata.metadata_patch(desired["metadata"], host["metadata"])
        if meta_patch is not None:
            patch["metadata"] = meta_patch
        if patch:
            await self.patch_host(host, patch)


class ConfigMaps(_ReferencedData):
    resource = "configmaps"
    rtype: ClassVar[ResourceType] = CONFIGMAPS
    ref_indexes = (CONFIGMAP_REFS,)

    def _pod_refs(self, pod: Obj) -> Iterable[str]:
        return pod_translate.referenced_configmaps(pod)


class Secrets(_ReferencedData):
    resource = "secrets"
    rtype: ClassVar[ResourceType] = SECRETS
    data_fields = ("data",)
    ref_indexes = (SECRET_REFS,)

    def setup(self, ctx: SyncContext) -> None:
        super().setup(ctx)
        # Ingress TLS secrets only while ingresses are synced: with ingresses disabled, a secret that
        # only an ingress names stays in the virtual cluster.
        self.ingresses = (
            ctx.virtual.informer(INGRESSES, indexers={INGRESS_SECRET_REFS: _namespaced(ingress_tls_secrets)})
            if ctx.options.syncs("ingresses")
            else None
        )
        if self.ingresses is not None:
            self.ingresses.add_listener(self._on_referrer(INGRESS_SECRET_REFS, ingress_tls_secrets))

    def _pod_refs(self, pod: Obj) -> Iterable[str]:
        return pod_translate.referenced_secrets(pod)

    def referrers(self, key: str) -> int:
        count = super().referrers(key)
        if self.ingresses is not None:
            count += len(self.ingresses.store.index_keys(INGRESS_SECRET_REFS, key))
        return count

    def desired_host(self, virtual: Obj) -> Obj:
        body = super().desired_host(virtual)
        body["type"] = virtual.get("type") or "Opaque"
        if body["type"] == "kubernetes.io/service-account-token":
            body["type"] = "Opaque"  # the host would try to fill it with a HOST token; never that
        return body

    async def update(self, virtual: Obj, host: Obj) -> None:
        desired = self.desired_host(virtual)
        if desired["type"] != host.get("type"):
            await self.delete_host(host)  # type is immutable
            return
        await super().update(virtual, host)
