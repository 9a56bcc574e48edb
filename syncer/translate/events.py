"""Host events about objects we synced → events in the virtual cluster.

Only events whose involved object resolves to a virtual object are copied; anything else would tell
the tenant about the host namespace. The copy is built field by field (an allowlist) rather than by
editing a copy of the host event, so a field added to Event later cannot carry host data across.
Host names are replaced by structured mapping first (involvedObject, related) and then redacted from
the message (the involved object's name, its ``<host ns>/<name>`` form, and, when the vcluster name is
given, any other ``<name>-x-<ns>-x-<vc>`` name such as a configmap a kubelet complains about).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from syncer.translate.names import redact_host_names

Resolver = Callable[[str, str], "tuple[str, str, str] | None"]
"""``resolve(kind, host_name) -> (virtual namespace, virtual name, virtual uid) | None``."""

MAX_EVENT_NAME_LENGTH = 253
_COPIED_FIELDS = (
    "reason",
    "type",
    "count",
    "firstTimestamp",
    "lastTimestamp",
    "eventTime",
    "series",
    "action",
    "source",
    "reportingComponent",
    "reportingInstance",
)
_REFERENCE_FIELDS = ("apiVersion", "kind", "fieldPath")


def virtual_event_name(host_event_name: str, host_object_name: str, virtual_name: str) -> str:
    """``<virtual name>.<suffix>``: the recorder's ``<object>.<hex>`` scheme with the object renamed.

    Deterministic, so a host event seen again (its count went up) updates the same virtual event. A
    host event not named after its object gets a hash suffix instead of leaking its name.
    """
    prefix = f"{host_object_name}."
    if host_event_name.startswith(prefix) and len(host_event_name) > len(prefix):
        suffix = host_event_name[len(prefix) :]
    else:
        suffix = hashlib.sha256(host_event_name.encode()).hexdigest()[:16]
    head = virtual_name[: MAX_EVENT_NAME_LENGTH - len(suffix) - 1].rstrip(".-")
    return f"{head}.{suffix}"


def _virtual_reference(reference: Mapping[str, Any], virtual: tuple[str, str, str]) -> dict[str, Any]:
    namespace, name, uid = virtual
    mapped = {key: reference[key] for key in _REFERENCE_FIELDS if key in reference}
    mapped.update({"namespace": namespace, "name": name, "uid": uid})
    return mapped


def _names_of(reference: Mapping[str, Any], virtual: tuple[str, str, str]) -> dict[str, str]:
    host_name, host_namespace = reference.get("name", ""), reference.get("namespace", "")
    namespace, name, _uid = virtual
    names = {host_name: name}
    if host_namespace:
        names[f"{host_namespace}/{host_name}"] = f"{namespace}/{name}"
    return names


def virtual_event(
    host_event: Mapping[str, Any], *, resolve: Resolver, vcluster: str | None = None
) -> dict[str, Any] | None:
    """The virtual Event for a host Event, or ``None`` when its involved object is not one we synced.

    ``resolve`` maps ``(kind, host name)`` to the virtual object; the caller backs it with its caches
    and the ownership check (a host object without our marker must resolve to ``None``). A ``related``
    object that does not resolve is dropped rather than copied.
    """
    involved = host_event.get("involvedObject") or {}
    kind, host_object = involved.get("kind"), involved.get("name")
    if not kind or not host_object:
        return None
    virtual = resolve(kind, host_object)
    if virtual is None:
        return None
    names = _names_of(involved, virtual)
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": virtual_event_name(
                (host_event.get("metadata") or {}).get("name", ""), host_object, virtual[1]
            ),
            "namespace": virtual[0],
        },
        "involvedObject": _virtual_reference(involved, virtual),
    }
    related = host_event.get("related") or {}
    related_virtual = (
        resolve(related["kind"], related["name"]) if related.get("kind") and related.get("name") else None
    )
    if related_virtual is not None:
        event["related"] = _virtual_reference(related, related_virtual)
        names = {**_names_of(related, related_virtual), **names}
    for key in _COPIED_FIELDS:
        if key in host_event:
            event[key] = host_event[key]
    if isinstance(host_event.get("message"), str):
        event["message"] = redact_host_names(host_event["message"], names, vcluster=vcluster)
    return event
