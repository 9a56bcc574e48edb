"""StorageClasses: host → virtual, read-only, with `--sync=+storageclasses`.

Keyed by class name (the same on both sides). Per key:

| host    | virtual                 | action                                                      |
|---------|-------------------------|-------------------------------------------------------------|
| present | absent                  | create the copy (also after a tenant deleted it)            |
| present | our copy, edited        | revert mutable fields; recreate if an immutable one differs |
| present | the tenant's own class  | leave it alone, tell the tenant once (a Warning event)      |
| absent  | our copy                | delete it                                                   |
| absent  | the tenant's own class  | nothing                                                     |

Reading host classes needs the cluster-scoped rules in `syncer.host_rbac.STORAGE_CLASS_CLUSTER_RULES`;
the namespaced Role alone is not enough, which is why this kind is opt-in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar

from ..controller import SyncContext
from ..informers import Informer
from ..kube.client import ApiError
from ..kube.resources import STORAGE_CLASSES
from ..translate import storageclasses
from .base import SYNC_ERROR, delete_exactly

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class StorageClasses:
    resource: ClassVar[str] = "storageclasses"

    ctx: SyncContext
    host_classes: Informer
    virtual_classes: Informer

    def setup(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        # Tenant classes with our names must be seen too (to leave them alone), so no label selector.
        self.virtual_classes = ctx.virtual.informer(STORAGE_CLASSES)
        self.host_classes = ctx.host.informer(STORAGE_CLASSES)
        self.virtual_classes.add_listener(self._on_change)
        self.host_classes.add_listener(self._on_change)
        # (name, uid) of tenant classes we already warned about: one event, not one per drift pass.
        self._warned: set[tuple[str, str]] = set()

    def _on_change(self, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is not None:
            self.ctx.enqueue(self.resource, obj["metadata"]["name"])

    def all_keys(self) -> Iterable[str]:
        keys = set(self.host_classes.store.keys())
        keys.update(
            obj["metadata"]["name"]
            for obj in self.virtual_classes.store.list()
            if storageclasses.is_synced_copy(obj)
        )
        return keys

    async def reconcile(self, key: str) -> None:
        host = self.host_classes.store.get(key)
        virtual = self.virtual_classes.store.get(key)
        if virtual is not None and not storageclasses.is_synced_copy(virtual):
            if host is not None:
                await self._warn_tenant_class(virtual)
            return
        if virtual is not None and virtual["metadata"].get("deletionTimestamp"):
            return  # its deletion event brings us back (to recreate it if the host class is there)
        if host is None:
            if virtual is not None:
                await self._delete(virtual)
            return
        desired = storageclasses.virtual_storage_class(host)
        if virtual is None:
            try:
                await self.ctx.virtual_client.create(STORAGE_CLASSES, desired)
            except ApiError as err:
                if not err.already_exists:
                    raise
                return  # the informer shows what is there; that event reconciles it
            log.info("storage class copied from the host", extra={"storageclass": key})
            return
        if storageclasses.needs_recreate(desired, virtual):
            log.info("recreating storage class to match the host", extra={"storageclass": key})
            await self._delete(virtual)
            return
        patch = storageclasses.storage_class_patch(desired, virtual)
        if patch is not None:
            log.info("reverting storage class to the host's", extra={"storageclass": key})
            await self.ctx.virtual_client.patch(STORAGE_CLASSES, key, patch)

    async def _delete(self, virtual: Obj) -> None:
        await delete_exactly(self.ctx.virtual_client, STORAGE_CLASSES, virtual, None)

    async def _warn_tenant_class(self, virtual: Obj) -> None:
        meta = virtual["metadata"]
        marker = (meta["name"], str(meta.get("uid")))
        if marker in self._warned:
            return
        self._warned.add(marker)
        await self.ctx.recorder.warning(
            virtual,
            SYNC_ERROR,
            f"not synced: the host StorageClass {meta['name']} is not copied over this class, "
            "which was not created by the syncer",
        )
