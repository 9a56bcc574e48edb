"""Host StorageClasses → read-only copies in the virtual cluster. Pure functions over plain dicts.

A tenant's claims are provisioned by the host, so the classes that matter are the host's: with
``--sync=+storageclasses`` each host class appears in the virtual cluster under its own name, with
its labels, annotations (the default-class annotation included, so the virtual API server defaults
``storageClassName`` the way the host would) and parameters. The copy is read-only: tenant edits are
reverted, and a copy whose host class is gone is deleted.

Only copies carry :data:`SYNCED_LABEL`; a class the tenant created itself never has it (reserved
keys from the host are dropped, so not even a copy of a copy can forge it) and is never written.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from syncer.translate.names import RESERVED_PREFIX

Json = dict[str, Any]
Object = Mapping[str, Any]

SYNCED_LABEL = RESERVED_PREFIX + "synced-from-host"
"""On virtual objects the syncer copied from the host (value "true"): the only ones it changes."""

# The API server refuses to change these after creation: a difference means delete and recreate.
IMMUTABLE_FIELDS: tuple[str, ...] = ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode")
MUTABLE_FIELDS: tuple[str, ...] = ("mountOptions", "allowVolumeExpansion", "allowedTopologies")


def _unreserved(values: Mapping[str, str] | None) -> dict[str, str]:
    return {key: value for key, value in (values or {}).items() if not key.startswith(RESERVED_PREFIX)}


def virtual_storage_class(host: Object) -> Json:
    """The virtual copy of a host StorageClass, as created."""
    meta = host.get("metadata") or {}
    labels = _unreserved(meta.get("labels"))
    labels[SYNCED_LABEL] = "true"
    body: Json = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": meta["name"], "labels": labels},
    }
    annotations = _unreserved(meta.get("annotations"))
    if annotations:
        body["metadata"]["annotations"] = annotations
    for field in (*IMMUTABLE_FIELDS, *MUTABLE_FIELDS):
        if host.get(field) is not None:
            body[field] = copy.deepcopy(host[field])
    return body


def is_synced_copy(virtual: Object) -> bool:
    return ((virtual.get("metadata") or {}).get("labels") or {}).get(SYNCED_LABEL) == "true"


def needs_recreate(desired: Object, current: Object) -> bool:
    """True when an immutable field differs (the host class was replaced, or defaults disagree)."""
    return any(desired.get(field) != current.get(field) for field in IMMUTABLE_FIELDS)


def _exact_map_patch(desired: Mapping[str, str], current: Mapping[str, str]) -> dict[str, Any]:
    patch: dict[str, Any] = {key: value for key, value in desired.items() if current.get(key) != value}
    patch.update({key: None for key in current if key not in desired})
    return patch


def storage_class_patch(desired: Object, current: Object) -> Json | None:
    """Merge patch making the virtual copy equal to ``desired`` again; None when it already is.

    Labels and annotations are replaced exactly (a read-only copy has no tenant keys to keep);
    mutable spec fields are set, or removed when the host class has none.
    """
    patch: Json = {}
    dmeta, cmeta = desired.get("metadata") or {}, current.get("metadata") or {}
    meta: Json = {}
    for key in ("labels", "annotations"):
        change = _exact_map_patch(dmeta.get(key) or {}, cmeta.get(key) or {})
        if change:
            meta[key] = change
    if meta:
        patch["metadata"] = meta
    for field in MUTABLE_FIELDS:
        if desired.get(field) != current.get(field):
            patch[field] = copy.deepcopy(desired.get(field))
    return patch or None
