"""Host metadata for virtual objects: labels, annotations, ownership, selectors.

Labels are copied verbatim (vcluster HEAD's choice; the hashed keys of v0.4-v0.20 made host tooling
unreadable), except keys under ``vcluster.loft.sh/``: those are ours on the host, and a tenant who sets
them in the virtual cluster must not be able to forge a marker or namespace label, so they are dropped.

Updates are 2-way merges with ownership: the host copy lists the tenant keys we copied
(``managed-labels`` / ``managed-annotations``), so a key the tenant removed is removed on the host while
a key that host tooling added is left alone. Everything under the reserved prefix is ours.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from syncer.translate.names import (
    ANN_MANAGED_ANNOTATIONS,
    ANN_MANAGED_LABELS,
    ANN_OBJECT_KIND,
    ANN_OBJECT_NAME,
    ANN_OBJECT_NAMESPACE,
    ANN_OBJECT_UID,
    MARKER_LABEL,
    NAMESPACE_LABEL,
    RESERVED_PREFIX,
    host_name,
)

Object = Mapping[str, Any]


def is_reserved_key(key: str) -> bool:
    """Keys under ``vcluster.loft.sh/`` are written by the syncer only; tenants' values are never trusted."""
    return key.startswith(RESERVED_PREFIX)


def _unreserved(values: Mapping[str, str] | None) -> dict[str, str]:
    return {key: value for key, value in (values or {}).items() if not is_reserved_key(key)}


def _key_list(keys: Collection[str]) -> str:
    return "\n".join(sorted(keys))


def _parse_key_list(value: str | None) -> set[str]:
    return {key for key in (value or "").split("\n") if key}


def host_labels(
    virtual_labels: Mapping[str, str] | None, vcluster: str, virtual_namespace: str
) -> dict[str, str]:
    """Labels of a host copy: the tenant's labels minus reserved keys, plus the marker and namespace."""
    labels = _unreserved(virtual_labels)
    labels[MARKER_LABEL] = vcluster
    labels[NAMESPACE_LABEL] = virtual_namespace
    return labels


def host_annotations(
    virtual_annotations: Mapping[str, str] | None, *, name: str, namespace: str, uid: str, kind: str
) -> dict[str, str]:
    """Annotations of a host copy: the tenant's minus reserved keys, plus the object-* proof of origin.

    ``managed-annotations`` lists the copied keys (omitted when there are none) for later 2-way merges.
    """
    annotations = _unreserved(virtual_annotations)
    copied = list(annotations)
    annotations[ANN_OBJECT_NAME] = name
    annotations[ANN_OBJECT_NAMESPACE] = namespace
    annotations[ANN_OBJECT_UID] = uid
    annotations[ANN_OBJECT_KIND] = kind
    if copied:
        annotations[ANN_MANAGED_ANNOTATIONS] = _key_list(copied)
    return annotations


def host_metadata(
    vobj: Object,
    *,
    vcluster: str,
    host_namespace: str,
    kind: str,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``{name, namespace, labels, annotations}`` of the host copy of a namespaced virtual object.

    Everything else in the virtual metadata (uid, resourceVersion, ownerReferences, finalizers,
    generateName, managedFields, timestamps) is meaningless on the host and is left out.
    ``annotations`` replaces the object's own tenant annotations when a translator adds keys of its own
    that should be tracked like tenant keys (e.g. the pod's ``safe-to-evict``).
    Cluster-scoped objects are out of scope here (their marker would need the host namespace too).
    """
    meta = vobj.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not name or not namespace:
        raise ValueError(
            f"host_metadata needs a namespaced object with a name, got {name!r} in {namespace!r}"
        )
    labels = host_labels(meta.get("labels"), vcluster, namespace)
    tenant_annotations = meta.get("annotations") if annotations is None else annotations
    host_ann = host_annotations(
        tenant_annotations, name=name, namespace=namespace, uid=meta.get("uid", ""), kind=kind
    )
    copied_labels = [key for key in labels if not is_reserved_key(key)]
    if copied_labels:
        host_ann[ANN_MANAGED_LABELS] = _key_list(copied_labels)
    return {
        "name": host_name(name, namespace, vcluster),
        "namespace": host_namespace,
        "labels": labels,
        "annotations": host_ann,
    }


def _map_patch(
    desired: Mapping[str, str], current: Mapping[str, str], owned: Collection[str]
) -> dict[str, Any]:
    patch: dict[str, Any] = {key: value for key, value in desired.items() if current.get(key) != value}
    for key in current:
        if key not in desired and (is_reserved_key(key) or key in owned):
            patch[key] = None
    return patch


def metadata_patch(desired: Object, current: Object) -> dict[str, Any] | None:
    """JSON merge-patch of ``metadata`` (labels and annotations) taking ``current`` to ``desired``.

    ``desired`` is what :func:`host_metadata` (or a translator built on it) produces; ``current`` is the
    live host object's metadata. Keys we own and no longer want are deleted (``null``); keys nobody asked
    us to manage survive. ``None`` means nothing to write: no-op reconciles must not write.
    """
    current_annotations: Mapping[str, str] = current.get("annotations") or {}
    desired_labels: Mapping[str, str] = desired.get("labels") or {}
    desired_annotations: Mapping[str, str] = desired.get("annotations") or {}
    label_patch = _map_patch(
        desired_labels,
        current.get("labels") or {},
        _parse_key_list(current_annotations.get(ANN_MANAGED_LABELS)),
    )
    annotation_patch = _map_patch(
        desired_annotations,
        current_annotations,
        _parse_key_list(current_annotations.get(ANN_MANAGED_ANNOTATIONS)),
    )
    patch = {}
    if label_patch:
        patch["labels"] = label_patch
    if annotation_patch:
        patch["annotations"] = annotation_patch
    return patch or None


def virtual_key_of(host_obj: Object) -> tuple[str, str] | None:
    """``(virtual namespace, virtual name)`` a host copy belongs to, from its annotations, or ``None``.

    Annotations, not the name: the name is ambiguous and may be hashed. This says which object a host
    copy *claims* to be; whether we may trust the claim is :func:`ownership`'s question.
    """
    annotations = (host_obj.get("metadata") or {}).get("annotations") or {}
    name, namespace = annotations.get(ANN_OBJECT_NAME), annotations.get(ANN_OBJECT_NAMESPACE)
    if not name or not namespace:
        return None
    return namespace, name


class Ownership(enum.Enum):
    """Whether the syncer may write a host object found under a virtual object's host name."""

    OURS = "ours"
    """Our marker, and the annotations name this very virtual object: update it."""
    FOREIGN = "foreign"
    """No marker, or another vcluster's: never adopt, overwrite or delete it."""
    OTHER_OBJECT = "other-object"
    """Our marker, but the annotations name another virtual object (the ambiguous ``-x-`` names or a
    hash collision), or cannot prove anything: refuse and tell the tenant (a ``SyncError`` event)."""
    PREVIOUS_INCARNATION = "previous-incarnation"
    """Ours and the same name, but the copy of an earlier virtual object that was deleted and recreated
    under that name (only reported when the virtual uid is given): replace it."""


def ownership(
    host_obj: Object,
    *,
    vcluster: str,
    virtual_namespace: str,
    virtual_name: str,
    kind: str,
    virtual_uid: str | None = None,
) -> Ownership:
    """Decide whether the host object belongs to the given virtual object.

    Fail closed: a marked object whose object-* annotations are missing cannot be proven ours (we always
    write them), so it is ``OTHER_OBJECT``, never adopted. This is what makes the ambiguous names safe:
    ``web-x-prod`` in ``team`` and ``web`` in ``prod-x-team`` share a host name, and whichever is synced
    second finds annotations naming the first.
    """
    meta = host_obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(MARKER_LABEL) != vcluster:
        return Ownership.FOREIGN
    annotations = meta.get("annotations") or {}
    claimed = (
        annotations.get(ANN_OBJECT_NAMESPACE),
        annotations.get(ANN_OBJECT_NAME),
        annotations.get(ANN_OBJECT_KIND),
    )
    if claimed != (virtual_namespace, virtual_name, kind):
        return Ownership.OTHER_OBJECT
    if virtual_uid is not None and annotations.get(ANN_OBJECT_UID) != virtual_uid:
        return Ownership.PREVIOUS_INCARNATION
    return Ownership.OURS


# --- selectors -----------------------------------------------------------------------------------


def host_selector(
    virtual_selector: Mapping[str, str] | None, vcluster: str, virtual_namespace: str
) -> dict[str, str]:
    """A service's host selector: the tenant's, scoped to the tenant's pods in that virtual namespace.

    An empty selector stays empty: a selector-less service has manually managed endpoints, and adding
    our scoping keys would turn it into "every tenant pod in the namespace".
    Reserved keys the tenant put in the selector are kept verbatim (host copies never carry tenant
    reserved labels, so such a term matches nothing: fail closed rather than widen), except the two
    scoping keys, whose values are always ours.
    """
    if not virtual_selector:
        return {}
    selector = dict(virtual_selector)
    selector[MARKER_LABEL] = vcluster
    selector[NAMESPACE_LABEL] = virtual_namespace
    return selector


def _unsatisfiable_requirement() -> dict[str, Any]:
    # matchLabels always requires the marker; this requires its absence: together they match nothing.
    return {"key": MARKER_LABEL, "operator": "DoesNotExist"}


def translate_label_selector(
    selector: Mapping[str, Any] | None,
    vcluster: str,
    virtual_namespace: str,
    *,
    namespaces: Collection[str] | None = None,
    all_namespaces: bool = False,
) -> dict[str, Any] | None:
    """A metav1.LabelSelector (affinity terms, topology spread) scoped to the tenant on the host.

    A ``None`` selector stays ``None``: in pod (anti-)affinity terms and spread constraints a null
    selector matches no pod, and scoping it would make it match every tenant pod.

    Scope: the marker always; the namespace label ``= virtual_namespace`` by default, ``In namespaces``
    when the term names namespaces (an empty collection matches nothing, expressed as an unsatisfiable
    requirement because ``In`` needs values), nothing more with ``all_namespaces`` (an empty
    namespaceSelector). Tenant requirements on reserved keys are kept as expressions, so a tenant
    asking for another namespace's label ANDs with ours and matches nothing instead of escaping.
    """
    if selector is None:
        return None
    match_labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        if is_reserved_key(key):
            expressions.append({"key": key, "operator": "In", "values": [value]})
        else:
            match_labels[key] = value
    expressions.extend(copy.deepcopy(list(selector.get("matchExpressions") or [])))
    match_labels[MARKER_LABEL] = vcluster
    if not all_namespaces:
        if namespaces is None:
            match_labels[NAMESPACE_LABEL] = virtual_namespace
        elif namespaces:
            expressions.append({"key": NAMESPACE_LABEL, "operator": "In", "values": sorted(set(namespaces))})
        else:
            expressions.append(_unsatisfiable_requirement())
    translated: dict[str, Any] = {"matchLabels": match_labels}
    if expressions:
        translated["matchExpressions"] = expressions
    return translated


def _requirement_matches(requirement: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = requirement.get("key", ""), requirement.get("operator")
    values: Sequence[str] = requirement.get("values") or []
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unknown label selector operator {operator!r}")


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: ``None`` matches nothing, ``{}`` matches everything."""
    if selector is None:
        return False
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_requirement_matches(req, labels) for req in selector.get("matchExpressions") or [])
