"""PersistentVolumeClaims virtual → host, their binding host → virtual, and fake PersistentVolumes.

Pure functions over plain dicts. The split of who owns what, per claim:

* The tenant owns the spec. It reaches the host once, at creation (a claim's spec is immutable on
  both sides), except the storage request, which may grow after binding: an *increase* is the one
  spec change propagated later (the API servers refuse decreases; we never ask).
* The host owns the binding. The virtual control plane runs without the PV binder, so the virtual
  claim's ``spec.volumeName``, its ``status`` and the binder's annotations
  (:data:`HOST_OWNED_ANNOTATIONS`) are copied from the host claim and nowhere else. Those annotations
  are therefore never copied back to the host as tenant annotations: doing so would make them
  "managed" there and let the two directions fight over them.
* A bound virtual claim needs a PersistentVolume of the host volume's *name* in the virtual cluster
  (what ``kubectl get pv`` shows, what the claim's ``volumeName`` points at). It is a fake
  (:func:`fake_persistent_volume`): nothing can mount it, the host pod mounts the host claim.

Names the claim refers to: ``dataSource``/``dataSourceRef`` name tenant objects (a claim to clone, a
snapshot, a populator's object) in a virtual namespace, so they become host names in the one host
namespace, and a cross-namespace ``dataSourceRef.namespace`` is folded into the name and dropped.
That happens for every kind, synced or not: an unsynced kind then names nothing on the host and the
claim stays Pending, instead of reaching whatever the host admin keeps in the host namespace under
the tenant's chosen name. ``storageClassName``, ``selector``, ``volumeName`` and
``volumeAttributesClassName`` name host-wide things and pass unchanged (vcluster's fake-PV mode):
fake PVs carry the host volume's name, so a tenant's ``volumeName`` means the same volume on both
sides, and a claim can only bind a volume that any claim of the host could bind.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from syncer.translate.metadata import host_metadata, metadata_patch
from syncer.translate.names import RESERVED_PREFIX, host_name

Json = dict[str, Any]
Object = Mapping[str, Any]

PVC_KIND = "PersistentVolumeClaim"

# Set by the host's PV controller (and external provisioners) on the host claim; copied H→V only.
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
HOST_OWNED_ANNOTATIONS: tuple[str, ...] = (
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_STORAGE_PROVISIONER,
    ANN_BETA_STORAGE_PROVISIONER,
)

# Spec fields of a claim copied to the host as they are; data sources are translated.
COPIED_SPEC_FIELDS: tuple[str, ...] = (
    "accessModes",
    "resources",
    "storageClassName",
    "volumeMode",
    "selector",
    "volumeName",
    "volumeAttributesClassName",
)

FAKE_PV_LABEL = RESERVED_PREFIX + "fake-pv"
"""On fake PersistentVolumes in the virtual cluster: only PVs carrying it are ever deleted."""
FAKE_CSI_DRIVER = "fake.vcluster.loft.sh"
"""The CSI driver of fake PVs: no node runs it, so nothing in the virtual cluster could mount one."""
FAKE_PV_ANNOTATIONS: dict[str, str] = {
    "kubernetes.io/createdby": "vcluster-syncer",
    "pv.kubernetes.io/provisioned-by": "vcluster-syncer",
    ANN_BOUND_BY_CONTROLLER: "true",
}

_BOUND_PHASES = ("Bound", "Lost")


# --- quantities ---------------------------------------------------------------------------------------

_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)")
_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{suffix: Decimal(1024**power) for power, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource.Quantity as an exact number (``"1Gi"`` → 1073741824, ``"1.5e3"`` → 1500).

    Needed to compare storage requests: both API servers canonicalise quantities, but a tenant's
    ``1024Mi`` and a host's ``1Gi`` are the same size and must not look like a change.
    """
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as err:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"not a quantity: {value!r}") from err
    if suffix in _SUFFIX:
        return base * _SUFFIX[suffix]
    return base.scaleb(int(suffix[1:]))  # a decimal exponent: e3, E-2


def storage_request(pvc: Object) -> str | None:
    requests = ((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}
    value = requests.get("storage")
    return str(value) if value is not None else None


def _larger(candidate: str | None, than: str | None) -> bool:
    if candidate is None:
        return False
    if than is None:
        return True
    try:
        return parse_quantity(candidate) > parse_quantity(than)
    except ValueError:
        return False  # the API server validated both; an unparsable value is never "an increase"


# --- virtual claim → host claim -----------------------------------------------------------------------


def translate_data_source(ref: Object | None, virtual_namespace: str, vcluster: str) -> Json | None:
    """A ``dataSource``/``dataSourceRef`` naming a tenant object → the name of its host copy.

    The referenced object lives in the claim's virtual namespace, or in ``ref.namespace`` (a
    cross-namespace ``dataSourceRef``); on the host everything is in one namespace, so the virtual
    namespace goes into the name and the ``namespace`` field is dropped (it would otherwise name a
    host namespace the tenant has no business in).
    """
    if not ref:
        return None
    translated = {key: value for key, value in ref.items() if key != "namespace"}
    if ref.get("name"):
        translated["name"] = host_name(ref["name"], ref.get("namespace") or virtual_namespace, vcluster)
    return translated


def host_pvc_spec(vpvc: Object, vcluster: str) -> Json:
    vspec = vpvc.get("spec") or {}
    namespace = vpvc["metadata"]["namespace"]
    spec: Json = {key: copy.deepcopy(vspec[key]) for key in COPIED_SPEC_FIELDS if key in vspec}
    for key in ("dataSource", "dataSourceRef"):
        translated = translate_data_source(vspec.get(key), namespace, vcluster)
        if translated is not None:
            spec[key] = translated
    return spec


def tenant_annotations(vpvc: Object) -> dict[str, str]:
    """The virtual claim's annotations that are the tenant's to copy to the host."""
    annotations: Mapping[str, str] = (vpvc.get("metadata") or {}).get("annotations") or {}
    return {key: value for key, value in annotations.items() if key not in HOST_OWNED_ANNOTATIONS}


def host_pvc(vpvc: Object, *, vcluster: str, host_namespace: str) -> Json:
    """The host copy of a virtual claim, as created."""
    return {
        "apiVersion": "v1",
        "kind": PVC_KIND,
        "metadata": host_metadata(
            vpvc,
            vcluster=vcluster,
            host_namespace=host_namespace,
            kind=PVC_KIND,
            annotations=tenant_annotations(vpvc),
        ),
        "spec": host_pvc_spec(vpvc, vcluster),
    }


def host_pvc_update(vpvc: Object, hpvc: Object, *, vcluster: str, host_namespace: str) -> Json | None:
    """Merge patch bringing an existing host claim up to date with its virtual claim; None if it is.

    Labels and tenant annotations follow the virtual claim (2-way merge, host-only keys survive). Of
    the spec, only a storage-request *increase* and a changed ``volumeAttributesClassName`` (the two
    things the API allows to change) are sent; every other difference is a host default or an
    immutable field and must not produce a write.
    """
    desired = host_pvc(vpvc, vcluster=vcluster, host_namespace=host_namespace)
    patch: Json = {}
    spec: Json = {}
    want = storage_request(vpvc)
    if _larger(want, storage_request(hpvc)):
        spec["resources"] = {"requests": {"storage": want}}
    vac = (vpvc.get("spec") or {}).get("volumeAttributesClassName")
    if vac and vac != (hpvc.get("spec") or {}).get("volumeAttributesClassName"):
        spec["volumeAttributesClassName"] = vac
    if spec:
        patch["spec"] = spec
    meta = metadata_patch(desired["metadata"], hpvc.get("metadata") or {})
    if meta is not None:
        patch["metadata"] = meta
    return patch or None


# --- host claim → virtual claim -----------------------------------------------------------------------


def is_bound(pvc: Object) -> bool:
    """Bound (or Lost after binding): in the virtual cluster only the syncer writes this phase."""
    return (pvc.get("status") or {}).get("phase") in _BOUND_PHASES


def virtual_pvc_patch(vpvc: Object, hpvc: Object) -> Json | None:
    """Merge patch for the virtual claim: the host's binder annotations and the bound volume's name.

    ``volumeName`` is set once the host claim is Bound (the binder writes the name a moment before
    the phase; the fake PV, made from the bound claim's capacity, comes first), and only once: the
    API server allows empty → name, nothing else, so a claim that names a volume already keeps it.
    """
    vannotations: Mapping[str, str] = (vpvc.get("metadata") or {}).get("annotations") or {}
    hannotations: Mapping[str, str] = (hpvc.get("metadata") or {}).get("annotations") or {}
    annotations: dict[str, str | None] = {}
    for key in HOST_OWNED_ANNOTATIONS:
        if hannotations.get(key) != vannotations.get(key):
            annotations[key] = hannotations.get(key)  # None removes it
    patch: Json = {}
    if annotations:
        patch["metadata"] = {"annotations": annotations}
    volume = (hpvc.get("spec") or {}).get("volumeName")
    if volume and is_bound(hpvc) and not (vpvc.get("spec") or {}).get("volumeName"):
        patch["spec"] = {"volumeName": volume}
    return patch or None


def merge_patch_between(current: Object, desired: Object) -> Json:
    """The JSON merge patch (RFC 7386) taking ``current`` to ``desired``: maps recursively, keys that
    went away as ``null``, anything else (lists included) replaced whole. ``desired`` holds no nulls."""
    patch: Json = {}
    for key, value in desired.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = merge_patch_between(old, value)
            if nested:
                patch[key] = nested
        elif value != old or key not in current:
            patch[key] = copy.deepcopy(value)
    patch.update({key: None for key in current if key not in desired})
    return patch


def virtual_pvc_status_patch(vpvc: Object, hpvc: Object) -> Json | None:
    """Merge patch of the virtual claim's status to the host's; None when they are equal.

    A patch, not a PUT: it carries no resourceVersion, so it cannot conflict with the metadata patch
    written a moment before or with the virtual pvc-protection controller's finalizer updates.
    """
    patch = merge_patch_between(vpvc.get("status") or {}, hpvc.get("status") or {})
    return patch or None


# --- fake persistent volumes --------------------------------------------------------------------------


def fake_persistent_volume(name: str, vpvc: Object, capacity: Mapping[str, Any] | None = None) -> Json:
    """A virtual PersistentVolume standing for host volume ``name``, pre-bound to the virtual claim.

    ``capacity`` is the host claim's ``status.capacity`` (the real size of the volume) when known,
    else the claim's request. Reclaim policy Delete: the fake goes when its claim goes, like a
    dynamically provisioned volume; what happens to the data is the host volume's own policy.
    """
    vspec = vpvc.get("spec") or {}
    meta = vpvc["metadata"]
    if not capacity:
        request = storage_request(vpvc)
        capacity = {"storage": request} if request else {}
    spec: Json = {
        "capacity": dict(capacity),
        "accessModes": list(vspec.get("accessModes") or ["ReadWriteOnce"]),
        "persistentVolumeReclaimPolicy": "Delete",
        "storageClassName": vspec.get("storageClassName") or "",
        "csi": {"driver": FAKE_CSI_DRIVER, "volumeHandle": name},
        "claimRef": {
            "apiVersion": "v1",
            "kind": PVC_KIND,
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta.get("uid", ""),
        },
    }
    if vspec.get("volumeMode"):
        spec["volumeMode"] = vspec["volumeMode"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "labels": {FAKE_PV_LABEL: "true"},
            "annotations": dict(FAKE_PV_ANNOTATIONS),
        },
        "spec": spec,
    }


def fake_pv_capacity_patch(pv: Object, vpvc: Object) -> Json | None:
    """Merge patch growing a fake PV with its claim (after a host resize); None when it matches.

    The claim's ``status.capacity`` is the host volume's real size, copied from the host claim.
    """
    capacity = (vpvc.get("status") or {}).get("capacity")
    if not capacity or capacity == (pv.get("spec") or {}).get("capacity"):
        return None
    return {"spec": {"capacity": dict(capacity)}}


def is_fake_pv(pv: Object) -> bool:
    return ((pv.get("metadata") or {}).get("labels") or {}).get(FAKE_PV_LABEL) == "true"


def pv_phase(pv: Object) -> str | None:
    phase = (pv.get("status") or {}).get("phase")
    return str(phase) if phase else None


def claimed_volume(pvc: Object) -> str | None:
    """The volume a claim is bound (or pre-bound) to: what keeps a fake PV alive."""
    volume = (pvc.get("spec") or {}).get("volumeName")
    return str(volume) if volume else None
