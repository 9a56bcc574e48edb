"""PersistentVolumeClaims (virtual spec → host, host binding → virtual) and fake PersistentVolumes.

Claims, per virtual key, looking at both sides:

| virtual              | host               | action                                                         |
|----------------------|--------------------|----------------------------------------------------------------|
| absent               | ours               | delete the host claim (the tenant deleted it)                  |
| terminating          | ours, live         | delete the host claim with the virtual claim's grace period    |
| terminating          | absent/terminating | nothing: the virtual pvc-protection controller finalizes it    |
| present, never bound | absent             | create the host claim                                          |
| present, bound       | absent             | the host claim is gone (deleted on the host): delete the       |
|                      |                    | virtual claim — a new empty host claim could never bind the    |
|                      |                    | volume the virtual claim names (volumeName is immutable)       |
| present              | terminating        | the host is deleting it: delete the virtual claim too          |
| present              | ours               | fake PV, volumeName + binder annotations + status H→V;         |
|                      |                    | labels, annotations, storage-request increase V→H              |

Finalizers: both API servers give every claim `kubernetes.io/pvc-protection`. The virtual
controller-manager's pvc-protection controller runs (it is not the binder), so a virtual claim that a
virtual pod bound to a node still uses stays Terminating until that pod is gone — as in any cluster —
while its host copy, deleted by us, stays Terminating until the host pod is gone. Neither side's
finalizer is ever touched by the syncer.

Fake PVs: the virtual cluster has no volumes of its own, so when a host claim binds, a PersistentVolume
of the host volume's name is created in the virtual cluster, pre-bound to the virtual claim, and
deleted (only if it carries our fake label) once no virtual claim names it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, ClassVar

from ..controller import SyncContext
from ..informers import Informer
from ..kube.client import ApiError
from ..kube.resources import PVCS, PVS, ResourceType
from ..translate import volumes
from .base import SYNC_ERROR, MirroredKind, delete_exactly

log = logging.getLogger(__name__)

Obj = dict[str, Any]
VOLUME_INDEX = "pvc-volume-name"
# A fake PV created for a claim is in use before the claim's new volumeName reaches our claim store
# (two watch streams): until the store shows it in use once, give it this long before deleting it.
ENSURE_GRACE_SECONDS = 30.0


def _claimed_volume(pvc: Obj) -> Iterable[str]:
    volume = volumes.claimed_volume(pvc)
    return [volume] if volume else []


def _terminating(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


class PersistentVolumeClaims(MirroredKind):
    resource: ClassVar[str] = "persistentvolumeclaims"
    rtype: ClassVar[ResourceType] = PVCS

    def setup(self, ctx: SyncContext) -> None:
        super().setup(ctx)
        # Resize requests the host refused, by virtual key: not retried (nor re-reported) on every
        # drift pass, only when the tenant asks for another size.
        self._refused_resize: dict[str, str] = {}

    def desired_host(self, virtual: Obj) -> Obj:
        return volumes.host_pvc(virtual, vcluster=self.ctx.vcluster, host_namespace=self.ctx.host_namespace)

    async def reconcile(self, key: str) -> None:
        sides = await self.both_sides(key)
        if sides is None:
            return
        virtual, host = sides
        if virtual is None:
            self._refused_resize.pop(key, None)
            if host is not None and not _terminating(host):
                await self.delete_host(host)
            return
        vmeta = virtual["metadata"]
        if _terminating(virtual):
            if host is not None and not _terminating(host):
                await self.delete_host(host, grace_period_seconds=vmeta.get("deletionGracePeriodSeconds"))
            return
        if host is None:
            if volumes.is_bound(virtual):
                log.info("host claim gone after it was bound; deleting the virtual claim", extra={"pvc": key})
                await self.delete_virtual(virtual, grace_period_seconds=None)
                return
            await self.create(virtual)
            return
        if _terminating(host):
            log.info("host claim is being deleted; deleting the virtual claim", extra={"pvc": key})
            await self.delete_virtual(
                virtual, grace_period_seconds=host["metadata"].get("deletionGracePeriodSeconds")
            )
            return
        virtual = await self.sync_back(virtual, host)
        await self.update(virtual, host)

    async def sync_back(self, virtual: Obj, host: Obj) -> Obj:
        """Host → virtual: the fake PV, volumeName and binder annotations, then status.

        Returns the virtual claim as last written (or as given): what the update V→H compares.
        """
        volume = volumes.claimed_volume(host)
        fake_pvs = self.ctx.syncers.get("persistentvolumes")
        if volume and volumes.is_bound(host) and isinstance(fake_pvs, FakePersistentVolumes):
            capacity = (host.get("status") or {}).get("capacity")
            await fake_pvs.ensure(volume, virtual, capacity)
        meta = virtual["metadata"]
        patch = volumes.virtual_pvc_patch(virtual, host)
        if patch is not None:
            virtual = await self.ctx.virtual_client.patch(PVCS, meta["name"], patch, meta["namespace"])
        status = volumes.virtual_pvc_status_patch(virtual, host)
        if status is not None:
            virtual = await self.ctx.virtual_client.patch(
                PVCS, meta["name"], {"status": status}, meta["namespace"], subresource="status"
            )
        return virtual

    async def update(self, virtual: Obj, host: Obj) -> None:
        """Virtual → host: labels, tenant annotations, a storage-request increase."""
        key = f"{virtual['metadata']['namespace']}/{virtual['metadata']['name']}"
        patch = volumes.host_pvc_update(
            virtual, host, vcluster=self.ctx.vcluster, host_namespace=self.ctx.host_namespace
        )
        if patch is None:
            return
        wanted_size = volumes.storage_request(virtual) or ""
        spec = patch.get("spec")
        if spec and self._refused_resize.get(key) == wanted_size:
            del patch["spec"]  # the host said no to exactly this; keep syncing the rest
            if not patch:
                return
        try:
            await self.patch_host(host, patch)
        except ApiError as err:
            if not spec or not (err.invalid or err.forbidden):
                raise
            self._refused_resize[key] = wanted_size
            await self.ctx.recorder.warning(
                virtual, SYNC_ERROR, f"the host cluster refused to resize the claim: {err.message}"
            )
            return
        if spec:
            self._refused_resize.pop(key, None)


class FakePersistentVolumes:
    """Virtual-only PersistentVolumes named after host volumes, alive while a virtual claim names one.

    Created on demand by the claim syncer once the host claim is Bound (`ensure`, before it sets the
    virtual claim's volumeName) and by this kind's own reconcile for any bound claim whose volume is
    missing; its capacity follows the claim's (a host resize). Deleted once no virtual claim names it:
    its phase becomes Released first, so the virtual pv-protection controller lets it go.
    """

    resource: ClassVar[str] = "persistentvolumes"

    ctx: SyncContext
    claims: Informer
    pvs: Informer

    def setup(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self._pending: dict[str, float] = {}
        self.claims = ctx.virtual.informer(PVCS, indexers={VOLUME_INDEX: _claimed_volume})
        self.pvs = ctx.virtual.informer(PVS, label_selector=f"{volumes.FAKE_PV_LABEL}=true")
        self.claims.add_listener(self._on_claim)
        self.pvs.add_listener(self._on_pv)

    def _on_claim(self, old: Obj | None, new: Obj | None) -> None:
        for claim in (old, new):
            for volume in _claimed_volume(claim or {}):
                self.ctx.enqueue(self.resource, volume)

    def _on_pv(self, old: Obj | None, new: Obj | None) -> None:
        pv = new or old
        if pv is not None:
            self.ctx.enqueue(self.resource, pv["metadata"]["name"])

    def all_keys(self) -> Iterable[str]:
        keys = set(self.pvs.store.keys())
        for claim in self.claims.store.list():
            keys.update(_claimed_volume(claim))
        return keys

    def claimants(self, name: str) -> list[Obj]:
        return self.claims.store.by_index(VOLUME_INDEX, name)

    async def ensure(self, name: str, claim: Obj, capacity: dict[str, Any] | None = None) -> None:
        """Make sure the fake PV `name` exists and is Bound (called before the claim names it)."""
        pv = self.pvs.store.get(name)
        if pv is None:
            self._pending[name] = time.monotonic()
            body = volumes.fake_persistent_volume(name, claim, capacity)
            try:
                pv = await self.ctx.virtual_client.create(PVS, body)
            except ApiError as err:
                if not err.already_exists:
                    raise
                return  # ours, not yet in the store (its event follows), or the tenant's own PV
            log.info(
                "fake persistent volume created",
                extra={"pv": name, "pvc": f"{claim['metadata']['namespace']}/{claim['metadata']['name']}"},
            )
        await self._set_phase(pv, "Bound")

    async def _set_phase(self, pv: Obj, phase: str) -> None:
        if volumes.pv_phase(pv) == phase:
            return
        await self.ctx.virtual_client.patch(
            PVS, pv["metadata"]["name"], {"status": {"phase": phase}}, subresource="status"
        )

    async def reconcile(self, key: str) -> None:
        pv = self.pvs.store.get(key)
        claims = self.claimants(key)
        if claims:
            self._pending.pop(key, None)  # seen in use: from now on, unused means unused
            bound = [claim for claim in claims if volumes.is_bound(claim)]
            if pv is None and bound:
                # Only for a claim the host bound: a tenant's pre-bound, still pending claim names
                # a volume that nothing has given it yet.
                await self.ensure(key, bound[0])
            elif pv is not None and not _terminating(pv):
                await self._set_phase(pv, "Bound")
                patch = volumes.fake_pv_capacity_patch(pv, bound[0]) if bound else None
                if patch is not None:
                    await self.ctx.virtual_client.patch(PVS, key, patch)
            return
        if pv is None:
            self._pending.pop(key, None)
            return
        since_ensure = time.monotonic() - self._pending.get(key, -ENSURE_GRACE_SECONDS)
        if since_ensure < ENSURE_GRACE_SECONDS:
            self.ctx.queues[self.resource].add_after(key, ENSURE_GRACE_SECONDS - since_ensure)
            return
        self._pending.pop(key, None)
        # Not Bound any more: the virtual pv-protection controller removes its finalizer on deletion.
        await self._set_phase(pv, "Released")
        if _terminating(pv):
            return
        await delete_exactly(self.ctx.virtual_client, PVS, pv, None)
        log.info("fake persistent volume deleted", extra={"pv": key})
