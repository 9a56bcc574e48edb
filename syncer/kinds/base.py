"""The common shape of a namespaced kind copied virtual → host (configmaps, secrets, services, ...).

A subclass says what the host copy should look like (`desired_host`), whether the virtual object
should be on the host at all (`wanted`), and how to bring an existing copy up to date (`update`);
this class does the rest the same way for every kind:

* the host informer watches only the target namespace and only objects with our marker;
* a host object found under the computed host name is written only if `ownership()` proves it is
  the copy of THIS virtual object. A foreign object (no marker) or one naming another virtual
  object (the ambiguous `-x-` names) is never modified or deleted: the tenant gets a `SyncError`
  Warning event instead;
* a create that collides with an unmarked host object (invisible to our marker-filtered informer)
  is caught by its AlreadyExists and treated the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar

from ..controller import SyncContext, split_key, virtual_key
from ..informers import Informer
from ..kube.client import ApiError, KubeClient
from ..kube.resources import ResourceType
from ..translate import metadata
from ..translate.metadata import Ownership

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SYNC_ERROR = "SyncError"


async def delete_exactly(client: KubeClient, rtype: ResourceType, obj: Obj, grace: int | None) -> None:
    """Delete this very object (uid precondition: never a newer one of the same name); an object
    already gone or replaced is fine — either way the one we meant no longer exists."""
    meta = obj["metadata"]
    try:
        await client.delete(
            rtype,
            meta["name"],
            meta.get("namespace"),
            grace_period_seconds=grace,
            preconditions={"uid": meta["uid"]},
        )
    except ApiError as err:
        if not (err.not_found or err.conflict):
            raise


class MirroredKind:
    resource: ClassVar[str]
    rtype: ClassVar[ResourceType]

    ctx: SyncContext
    virtual_informer: Informer
    host_informer: Informer

    @property
    def kind(self) -> str:
        return self.rtype.kind

    # --- wiring

    def setup(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.virtual_informer = ctx.virtual.informer(self.rtype)
        self.host_informer = ctx.host.informer(
            self.rtype, namespace=ctx.host_namespace, label_selector=ctx.marker_selector
        )
        self.virtual_informer.add_listener(self._on_virtual)
        self.host_informer.add_listener(self._on_host)

    @property
    def queue_add(self) -> Any:
        return self.ctx.queues[self.resource].add

    def _on_virtual(self, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is not None:
            self.queue_add(virtual_key(obj))

    def _on_host(self, old: Obj | None, new: Obj | None) -> None:
        for obj in (old, new):
            if obj is None:
                continue
            ref = metadata.virtual_key_of(obj)
            if ref is not None:
                self.queue_add(f"{ref[0]}/{ref[1]}")

    def all_keys(self) -> Iterable[str]:
        keys = set(self.virtual_informer.store.keys())
        for obj in self.host_informer.store.list():
            ref = metadata.virtual_key_of(obj)
            if ref is not None:
                keys.add(f"{ref[0]}/{ref[1]}")
        return keys

    # --- lookups

    def virtual(self, key: str) -> Obj | None:
        return self.virtual_informer.store.get(key)

    def host_for(self, namespace: str, name: str) -> Obj | None:
        return self.host_informer.store.get(
            f"{self.ctx.host_namespace}/{self.ctx.host_name(name, namespace)}"
        )

    def ownership_of(self, host: Obj, namespace: str, name: str, virtual: Obj | None) -> Ownership:
        uid = (virtual or {}).get("metadata", {}).get("uid") if virtual is not None else None
        return metadata.ownership(
            host,
            vcluster=self.ctx.vcluster,
            virtual_namespace=namespace,
            virtual_name=name,
            kind=self.kind,
            virtual_uid=uid,
        )

    def host_metadata(self, virtual: Obj, **kwargs: Any) -> Obj:
        return metadata.host_metadata(
            virtual,
            vcluster=self.ctx.vcluster,
            host_namespace=self.ctx.host_namespace,
            kind=self.kind,
            **kwargs,
        )

    # --- what subclasses say

    def wanted(self, virtual: Obj) -> bool:
        """Should this virtual object have a host copy right now?"""
        return True

    def desired_host(self, virtual: Obj) -> Obj:
        raise NotImplementedError

    async def update(self, virtual: Obj, host: Obj) -> None:
        """Bring an existing, owned host copy up to date (write nothing when it already is)."""
        raise NotImplementedError

    async def after_create(self, virtual: Obj, host: Obj) -> None:
        """Hook for kinds that sync something back right after creating (e.g. a ClusterIP)."""

    # --- the reconcile every mirrored kind shares

    async def both_sides(self, key: str) -> tuple[Obj | None, Obj | None] | None:
        """The virtual object of `key` and its host copy — or None when the host name is held by
        something else (the tenant is told, nothing is touched) or by the copy of an earlier virtual
        object of that name (deleted; its deletion event brings us back). Every reconcile starts here.
        """
        namespace, name = split_key(key)
        virtual = self.virtual(key)
        host = self.host_for(namespace, name)
        if host is not None:
            owned = self.ownership_of(host, namespace, name, virtual)
            if owned is Ownership.PREVIOUS_INCARNATION:
                if not host["metadata"].get("deletionTimestamp"):
                    await self.delete_host(host)
                return None
            if owned is not Ownership.OURS:
                if virtual is not None:
                    await self.refuse(virtual, host)
                return None
        return virtual, host

    async def reconcile(self, key: str) -> float | None:
        sides = await self.both_sides(key)
        if sides is None:
            return None
        virtual, host = sides
        if virtual is None or virtual["metadata"].get("deletionTimestamp") or not self.wanted(virtual):
            if host is not None:
                await self.delete_host(host)
            return None
        if host is None:
            await self.create(virtual)
        else:
            await self.update(virtual, host)
        return None

    async def create(self, virtual: Obj, body: Obj | None = None) -> None:
        """Create the host copy (`body` when the caller already translated it), then `after_create`."""
        created = await self.create_host(virtual, body)
        if created is not None:
            await self.after_create(virtual, created)

    async def create_host(self, virtual: Obj, body: Obj | None = None) -> Obj | None:
        """The host create alone: the created object, or None when an existing copy was updated
        (ours, the informer had not seen it yet) or refused (not ours)."""
        body = body if body is not None else self.desired_host(virtual)
        try:
            created: Obj = await self.ctx.host_client.create(self.rtype, body, self.ctx.host_namespace)
        except ApiError as err:
            if not err.already_exists:
                raise
            existing = await self.ctx.host_client.get(
                self.rtype, body["metadata"]["name"], self.ctx.host_namespace
            )
            meta = virtual["metadata"]
            if self.ownership_of(existing, meta["namespace"], meta["name"], virtual) is Ownership.OURS:
                await self.update(virtual, existing)
            else:
                await self.refuse(virtual, existing)
            return None
        return created

    async def delete_host(self, host: Obj, *, grace_period_seconds: int | None = None) -> None:
        await delete_exactly(self.ctx.host_client, self.rtype, host, grace_period_seconds)

    async def delete_virtual(self, virtual: Obj, *, grace_period_seconds: int | None = None) -> None:
        await delete_exactly(self.ctx.virtual_client, self.rtype, virtual, grace_period_seconds)

    async def refuse(self, virtual: Obj, host: Obj) -> None:
        """Tell the tenant why its object is not synced; the host object stays untouched."""
        hmeta = host.get("metadata", {})
        claimed = metadata.virtual_key_of(host)
        if (
            metadata.ownership(
                host, vcluster=self.ctx.vcluster, virtual_namespace="", virtual_name="", kind=self.kind
            )
            is Ownership.FOREIGN
        ):
            why = "exists on the host and is not managed by this virtual cluster"
        elif claimed is not None:
            why = f"is already the host copy of {self.kind} {claimed[0]}/{claimed[1]}"
        else:
            why = "is used on the host by an object this virtual cluster cannot prove it owns"
        await self.ctx.recorder.warning(
            virtual,
            SYNC_ERROR,
            f"not synced: host {self.kind} {hmeta.get('namespace')}/{hmeta.get('name')} {why}",
        )
        log.warning(
            "refused to sync",
            extra={"kind": self.kind, "object": virtual_key(virtual), "host": hmeta.get("name"), "why": why},
        )

    async def patch_host(self, host: Obj, patch: Obj) -> None:
        meta = host["metadata"]
        await self.ctx.host_client.patch(self.rtype, meta["name"], patch, meta["namespace"])
