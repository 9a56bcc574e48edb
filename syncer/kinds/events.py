"""Events host → virtual, for objects we synced, with every host name mapped back.

The host's scheduler and kubelet (kwok in tests) report on the HOST pod: "Scheduled", "Pulled",
"Started", evictions. The tenant should see them on the VIRTUAL pod (`kubectl describe pod`), named
as they know it. An event about anything we did not sync is not copied: its involved object and
message would leak host names.

Keys are host event names. A host event may arrive before our host-pod store has seen the pod it is
about (we created both a moment ago); such an event is retried for a short while before it is
dropped.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from typing import Any, ClassVar

from ..controller import SyncContext
from ..informers import Informer
from ..kube.client import ApiError
from ..kube.resources import EVENTS, ResourceType
from ..translate import metadata, names
from ..translate.events import virtual_event

log = logging.getLogger(__name__)

Obj = dict[str, Any]
RETRY_WINDOW_SECONDS = 30.0


def _age_seconds(event: Obj) -> float:
    stamp = event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp")
    if not stamp:
        return 0.0
    try:
        when = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (datetime.datetime.now(datetime.UTC) - when).total_seconds()


class Events:
    resource: ClassVar[str] = "events"

    ctx: SyncContext
    host_events: Informer

    def setup(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.host_events = ctx.host.informer(EVENTS, namespace=ctx.host_namespace)
        self.host_events.add_listener(self._on_event)

    def _on_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None:
            self.ctx.enqueue(self.resource, new["metadata"]["name"])

    def all_keys(self) -> Iterable[str]:
        return ()  # events are copied when they happen; a drift pass has nothing to repair

    def _host_store_for(self, kind: str) -> Informer | None:
        for syncer in self.ctx.syncers.values():
            rtype: ResourceType | None = getattr(syncer, "rtype", None)
            informer: Informer | None = getattr(syncer, "host_informer", None)
            if rtype is not None and informer is not None and rtype.kind == kind:
                return informer
        return None

    def resolve(self, kind: str, host_name: str) -> tuple[str, str, str] | None:
        informer = self._host_store_for(kind)
        if informer is None:
            return None
        host = informer.store.get(f"{self.ctx.host_namespace}/{host_name}")
        if host is None:
            return None
        ref = metadata.virtual_key_of(host)
        if ref is None:
            return None
        uid = ((host.get("metadata") or {}).get("annotations") or {}).get(names.ANN_OBJECT_UID, "")
        return ref[0], ref[1], uid

    async def reconcile(self, key: str) -> None:
        host_event = self.host_events.store.get(f"{self.ctx.host_namespace}/{key}")
        if host_event is None:
            return
        involved = host_event.get("involvedObject") or {}
        virtual = virtual_event(host_event, resolve=self.resolve, vcluster=self.ctx.vcluster)
        if virtual is None:
            if (
                self._host_store_for(involved.get("kind", "")) is not None
                and _age_seconds(host_event) < RETRY_WINDOW_SECONDS
            ):
                self.ctx.queues[self.resource].add_after(key, 1.0)
            return
        await self._upsert(virtual)

    async def _upsert(self, virtual: Obj) -> None:
        meta = virtual["metadata"]
        client = self.ctx.virtual_client
        try:
            await client.create(EVENTS, virtual, meta["namespace"])
            return
        except ApiError as err:
            if not err.already_exists:
                raise
        current = await client.get(EVENTS, meta["name"], meta["namespace"])
        fields = ("count", "lastTimestamp", "message", "series")
        patch = {
            f: virtual.get(f)
            for f in fields
            if virtual.get(f) is not None and current.get(f) != virtual.get(f)
        }
        if patch:
            await client.patch(EVENTS, meta["name"], patch, meta["namespace"])
