"""The table of synced kinds: one module per kind, one entry per `--sync` resource name.

Resources without an entry yet are accepted by the flags (they are valid vcluster names) and simply
have no controller; the start-up log and the `vcluster_syncer_resource_enabled` metric show what runs.
"""

from __future__ import annotations

from collections.abc import Callable

from ..controller import KindSyncer
from ..options import SyncerOptions
from .configmaps import ConfigMaps, Secrets
from .endpoints import Endpoints
from .events import Events
from .ingresses import Ingresses
from .nodes import FakeNodes
from .pods import Pods
from .services import Services
from .storageclasses import StorageClasses
from .volumes import FakePersistentVolumes, PersistentVolumeClaims

REGISTRY: dict[str, Callable[[], KindSyncer]] = {
    "pods": Pods,
    "services": Services,
    "endpoints": Endpoints,
    "ingresses": Ingresses,
    "configmaps": ConfigMaps,
    "secrets": Secrets,
    "events": Events,
    "nodes": FakeNodes,
    "persistentvolumeclaims": PersistentVolumeClaims,
    "persistentvolumes": FakePersistentVolumes,
    "storageclasses": StorageClasses,
}


def build_syncers(options: SyncerOptions) -> list[KindSyncer]:
    return [factory() for name, factory in REGISTRY.items() if options.syncs(name)]
