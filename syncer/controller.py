"""The sync engine: one small Protocol per synced kind, one shared context, one runner.

Every kind is reconciled by the key of its *virtual* object (`ns/name`, or `name` for cluster-scoped
ones) — whether the change was seen in the virtual cluster or on the host copy, which carries the
virtual key in its `vcluster.loft.sh/object-*` annotations. One reconcile looks at both sides and
decides: create, update either way, or delete. That is vcluster's v0.4.4+ design (a single
controller per kind, no separate garbage collector racing it).

On top of events, a drift pass enqueues every key of every kind at start-up and then every
`resync_seconds`: marked host objects without a virtual counterpart are deleted, missing host copies
recreated. A reconcile that finds nothing to change writes nothing (`vcluster_writes_total`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from prometheus_client import Counter, Gauge

from .cache.queue import WorkQueue, run_workers
from .informers import Informers
from .kube.client import KubeClient
from .options import SyncerOptions
from .recorder import EventRecorder
from .translate import names

log = logging.getLogger(__name__)

RESYNCS = Counter("vcluster_syncer_resyncs_total", "Drift passes run (every key of every kind enqueued)")
ENABLED = Gauge("vcluster_syncer_resource_enabled", "1 for each resource this syncer syncs", ["resource"])

Obj = dict[str, Any]


class KindSyncer(Protocol):
    """What each synced kind implements. Registered in syncer.kinds.REGISTRY."""

    # The name used by --sync / --disable-sync-resources.
    resource: ClassVar[str]

    def setup(self, ctx: SyncContext) -> None:
        """Register informers, indexers and listeners (before anything runs)."""

    async def reconcile(self, key: str) -> float | None:
        """Bring host and virtual state for this virtual key together. Raise to retry with backoff;
        return a number of seconds to be called again for this key after that long."""

    def all_keys(self) -> Iterable[str]:
        """Every key the drift pass should look at: virtual objects and marked host copies."""


@dataclass
class SyncContext:
    """What every kind syncer shares: options, clients, informers, the recorder, each other's queues."""

    options: SyncerOptions
    virtual_client: KubeClient
    host_client: KubeClient
    virtual: Informers
    host: Informers
    recorder: EventRecorder
    queues: dict[str, WorkQueue[str]] = field(default_factory=dict)
    syncers: dict[str, KindSyncer] = field(default_factory=dict)
    # Resolved at start-up: the ClusterIP of the host Service that fronts this syncer.
    kube_service_ip: str = ""

    @property
    def vcluster(self) -> str:
        return self.options.name

    @property
    def host_namespace(self) -> str:
        return self.options.target_namespace

    @property
    def marker_selector(self) -> str:
        return f"{names.MARKER_LABEL}={self.options.name}"

    def host_name(self, name: str, namespace: str) -> str:
        return names.host_name(name, namespace, self.options.name)

    def enqueue(self, resource: str, key: str) -> None:
        """Ask another kind's syncer to look at a key (no-op if that kind is disabled)."""
        queue = self.queues.get(resource)
        if queue is not None:
            queue.add(key)

    def syncs(self, resource: str) -> bool:
        return resource in self.syncers


def virtual_key(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.rpartition("/")
    return namespace, name


class Engine:
    """Runs the enabled kind syncers: informers, workers and the periodic drift pass."""

    def __init__(self, ctx: SyncContext, syncers: Iterable[KindSyncer]) -> None:
        self.ctx = ctx
        for syncer in syncers:
            ctx.syncers[syncer.resource] = syncer
            ctx.queues[syncer.resource] = WorkQueue(name=syncer.resource)
        for resource in ctx.syncers:
            ENABLED.labels(resource).set(1)
        self.ready = asyncio.Event()

    def resync(self) -> None:
        RESYNCS.inc()
        for resource, syncer in self.ctx.syncers.items():
            queue = self.ctx.queues[resource]
            for key in syncer.all_keys():
                queue.add(key)

    async def run(self) -> None:
        for syncer in self.ctx.syncers.values():
            syncer.setup(self.ctx)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.ctx.virtual.run(), name="virtual-informers")
                tasks.create_task(self.ctx.host.run(), name="host-informers")
                await self.ctx.virtual.wait_synced()
                await self.ctx.host.wait_synced()
                log.info("caches synced", extra={"resources": sorted(self.ctx.syncers)})
                self.resync()
                for resource, syncer in self.ctx.syncers.items():
                    tasks.create_task(
                        run_workers(
                            self.ctx.queues[resource],
                            syncer.reconcile,
                            workers=self.ctx.options.workers,
                            name=resource,
                        ),
                        name=f"workers-{resource}",
                    )
                self.ready.set()
                tasks.create_task(self._drift_loop(), name="drift-pass")
        finally:
            for queue in self.ctx.queues.values():
                queue.shutdown()

    async def _drift_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.options.resync_seconds)
            self.resync()
