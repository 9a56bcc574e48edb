"""Shared informers: one reflector and one store per (cluster, resource, scope), many listeners.

Several syncers look at the same objects — the pod syncer, the configmap syncer (which configmaps do
pods reference?), the node syncer (which nodes are in use?) all read virtual pods — so each kind is
listed and watched once, into one store with the indexes every reader asked for, and every change
is fanned out to the listeners that asked for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .cache.store import Store
from .kube.client import KubeClient
from .kube.reflector import Reflector
from .kube.resources import ResourceType

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Listener = Callable[[Obj | None, Obj | None], None]
Indexer = Callable[[Obj], Iterable[str]]


@dataclass
class Informer:
    """A store kept current by a reflector, plus who wants to hear about changes."""

    resource: ResourceType
    namespace: str | None
    label_selector: str | None
    store: Store
    reflector: Reflector
    listeners: list[Listener] = field(default_factory=list)

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def _dispatch(self, old: Obj | None, new: Obj | None) -> None:
        for listener in self.listeners:
            try:
                listener(old, new)
            except Exception:  # one listener's bug must not starve the others or kill the watch
                log.exception("listener failed", extra={"resource": self.resource.plural})

    @property
    def synced(self) -> bool:
        return self.reflector.synced.is_set()


class Informers:
    """The informers of one cluster. Register everything, then `run()`."""

    def __init__(self, client: KubeClient, *, cluster: str) -> None:
        self.client = client
        self.cluster = cluster
        self._informers: dict[tuple[str, str | None, str | None], Informer] = {}
        self._started = False

    def informer(
        self,
        resource: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        indexers: dict[str, Indexer] | None = None,
    ) -> Informer:
        """Get or create the informer for this scope; indexers are merged into its store."""
        key = (resource.plural + "." + resource.group, namespace, label_selector)
        existing = self._informers.get(key)
        if existing is None:
            if self._started:
                raise RuntimeError("informers must be registered before run()")
            store = Store()
            reflector = Reflector(
                self.client,
                resource,
                store,
                namespace=namespace,
                label_selector=label_selector,
                name=f"{self.cluster}/{resource.plural}",
            )
            existing = Informer(resource, namespace, label_selector, store, reflector)
            reflector.on_change = existing._dispatch
            self._informers[key] = existing
        for name, fn in (indexers or {}).items():
            # An index name means one thing everywhere: the first registration serves every kind.
            if not existing.store.has_index(name):
                existing.store.add_indexer(name, fn)
        return existing

    async def run(self) -> None:
        """Run every reflector until cancelled."""
        self._started = True
        async with asyncio.TaskGroup() as tasks:
            for informer in self._informers.values():
                tasks.create_task(
                    informer.reflector.run(), name=f"reflector-{self.cluster}-{informer.resource.plural}"
                )

    async def wait_synced(self) -> None:
        for informer in list(self._informers.values()):
            await informer.reflector.synced.wait()

    @property
    def synced(self) -> bool:
        return all(i.synced for i in self._informers.values())
