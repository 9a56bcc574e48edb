"""PersistentVolumeClaim translation both ways, quantities, and fake PersistentVolumes."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncer.translate.metadata import Ownership, ownership
from syncer.translate.names import (
    ANN_MANAGED_ANNOTATIONS,
    ANN_OBJECT_KIND,
    ANN_OBJECT_NAME,
    ANN_OBJECT_NAMESPACE,
    MARKER_LABEL,
    NAMESPACE_LABEL,
    host_name,
    is_dns1123_subdomain,
)
from syncer.translate.volumes import (
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_STORAGE_PROVISIONER,
    FAKE_CSI_DRIVER,
    FAKE_PV_LABEL,
    HOST_OWNED_ANNOTATIONS,
    claimed_volume,
    fake_persistent_volume,
    fake_pv_capacity_patch,
    host_pvc,
    host_pvc_update,
    is_bound,
    is_fake_pv,
    merge_patch_between,
    parse_quantity,
    translate_data_source,
    virtual_pvc_patch,
    virtual_pvc_status_patch,
)

VC, HNS = "vc1", "team-a"


def pvc(name: str = "data", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A claim shaped as a v1.37 API server returns it (defaults filled in)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "resourceVersion": "7",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "finalizers": ["kubernetes.io/pvc-protection"],
            "labels": {"app": "db"},
            "annotations": {"team": "blue"},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "standard",
            "volumeMode": "Filesystem",
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, what the API server does with a merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def created_host(vpvc: dict[str, Any]) -> dict[str, Any]:
    """The host claim as the host API server would hold it after our create."""
    body = host_pvc(vpvc, vcluster=VC, host_namespace=HNS)
    body["metadata"]["uid"] = "host-uid"
    body["metadata"]["finalizers"] = ["kubernetes.io/pvc-protection"]
    body["status"] = {"phase": "Pending"}
    return body


# --- quantities


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1Gi", 1024**3),
        ("1024Mi", 1024**3),
        ("1G", 10**9),
        ("500M", 5 * 10**8),
        ("1.5Gi", 3 * 2**29),
        ("100m", Decimal("0.1")),
        ("1e3", 1000),
        ("1E3", 1000),
        ("2E", 2 * 10**18),
        ("12", 12),
        (".5Ki", 512),
        ("1Ei", 2**60),
    ],
)
def test_parse_quantity(text: str, value: int | Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Gi", "1GB", "1 Gi", "one", "1Gi2"])
def test_parse_quantity_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(text)


@given(st.integers(min_value=0, max_value=2**40))
def test_binary_and_decimal_spellings_agree(n: int) -> None:
    assert parse_quantity(f"{n}Ki") == parse_quantity(str(n * 1024)) == parse_quantity(f"{n * 1024}")
    assert parse_quantity(f"{n}k") == parse_quantity(f"{n}e3")


# --- virtual → host


def test_host_claim_name_metadata_and_spec() -> None:
    body = host_pvc(pvc(), vcluster=VC, host_namespace=HNS)
    meta = body["metadata"]
    assert meta["name"] == "data-x-default-x-vc1"
    assert meta["namespace"] == HNS
    assert meta["labels"] == {"app": "db", MARKER_LABEL: VC, NAMESPACE_LABEL: "default"}
    assert meta["annotations"]["team"] == "blue"
    assert meta["annotations"][ANN_OBJECT_NAME] == "data"
    assert meta["annotations"][ANN_OBJECT_NAMESPACE] == "default"
    assert meta["annotations"][ANN_OBJECT_KIND] == "PersistentVolumeClaim"
    assert not {"uid", "resourceVersion", "finalizers", "creationTimestamp"} & set(meta)
    assert body["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
        "storageClassName": "standard",
        "volumeMode": "Filesystem",
    }
    assert "status" not in body


def test_host_claim_passes_host_wide_names_unchanged() -> None:
    selector = {"matchLabels": {"tier": "fast"}}
    body = host_pvc(
        pvc(selector=selector, volumeName="pv-1", volumeAttributesClassName="gold"),
        vcluster=VC,
        host_namespace=HNS,
    )
    assert body["spec"]["selector"] == selector
    assert body["spec"]["volumeName"] == "pv-1"
    assert body["spec"]["volumeAttributesClassName"] == "gold"


def test_host_claim_translates_data_sources() -> None:
    source = {"kind": "PersistentVolumeClaim", "name": "origin"}
    body = host_pvc(
        pvc(
            namespace="prod",
            dataSource=source,
            dataSourceRef={"apiGroup": "", "kind": "PersistentVolumeClaim", "name": "origin"},
        ),
        vcluster=VC,
        host_namespace=HNS,
    )
    assert body["spec"]["dataSource"] == {"kind": "PersistentVolumeClaim", "name": "origin-x-prod-x-vc1"}
    assert body["spec"]["dataSourceRef"] == {
        "apiGroup": "",
        "kind": "PersistentVolumeClaim",
        "name": "origin-x-prod-x-vc1",
    }


def test_cross_namespace_data_source_ref_is_folded_into_the_name() -> None:
    ref = {
        "apiGroup": "snapshot.storage.k8s.io",
        "kind": "VolumeSnapshot",
        "name": "snap",
        "namespace": "backups",
    }
    assert translate_data_source(ref, "prod", VC) == {
        "apiGroup": "snapshot.storage.k8s.io",
        "kind": "VolumeSnapshot",
        "name": "snap-x-backups-x-vc1",
    }
    assert translate_data_source(None, "prod", VC) is None


def test_host_owned_annotations_never_go_to_the_host() -> None:
    vpvc = pvc()
    vpvc["metadata"]["annotations"].update({key: "yes" for key in HOST_OWNED_ANNOTATIONS})
    annotations = host_pvc(vpvc, vcluster=VC, host_namespace=HNS)["metadata"]["annotations"]
    assert not set(HOST_OWNED_ANNOTATIONS) & set(annotations)
    assert annotations[ANN_MANAGED_ANNOTATIONS] == "team"


def test_long_name_is_shortened_and_still_valid() -> None:
    name = "a-very-long-persistent-volume-claim-name-for-a-statefulset-replica-0"
    body = host_pvc(pvc(name=name, namespace="production"), vcluster=VC, host_namespace=HNS)
    assert len(body["metadata"]["name"]) == 63
    assert body["metadata"]["name"] == host_name(name, "production", VC)
    assert is_dns1123_subdomain(body["metadata"]["name"])
    assert body["metadata"]["annotations"][ANN_OBJECT_NAME] == name


def test_ambiguous_names_share_a_host_name_but_not_ownership() -> None:
    first = host_pvc(pvc(name="data-x-prod", namespace="team-s"), vcluster=VC, host_namespace=HNS)
    second = pvc(name="data", namespace="prod-x-team-s")
    assert first["metadata"]["name"] == host_pvc(second, vcluster=VC, host_namespace=HNS)["metadata"]["name"]
    verdict = ownership(
        first,
        vcluster=VC,
        virtual_namespace="prod-x-team-s",
        virtual_name="data",
        kind="PersistentVolumeClaim",
    )
    assert verdict is Ownership.OTHER_OBJECT


def test_no_update_right_after_create() -> None:
    vpvc = pvc()
    assert host_pvc_update(vpvc, created_host(vpvc), vcluster=VC, host_namespace=HNS) is None


def test_host_defaults_and_binding_do_not_cause_writes() -> None:
    vpvc = pvc(storageClassName=None)
    del vpvc["spec"]["storageClassName"]
    host = created_host(vpvc)
    host["spec"]["storageClassName"] = "host-default"  # the host's DefaultStorageClass admission
    host["spec"]["volumeName"] = "pv-1"
    host["metadata"]["annotations"][ANN_BIND_COMPLETED] = "yes"
    host["status"] = {"phase": "Bound", "capacity": {"storage": "2Gi"}}
    assert host_pvc_update(vpvc, host, vcluster=VC, host_namespace=HNS) is None
    # ... even after the binder's annotations came back to the virtual claim.
    vpvc["metadata"]["annotations"][ANN_BIND_COMPLETED] = "yes"
    assert host_pvc_update(vpvc, host, vcluster=VC, host_namespace=HNS) is None


def test_storage_increase_propagates_and_decrease_does_not() -> None:
    vpvc = pvc()
    host = created_host(vpvc)
    vpvc["spec"]["resources"]["requests"]["storage"] = "2Gi"
    patch = host_pvc_update(vpvc, host, vcluster=VC, host_namespace=HNS)
    assert patch == {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
    vpvc["spec"]["resources"]["requests"]["storage"] = "512Mi"
    assert host_pvc_update(vpvc, host, vcluster=VC, host_namespace=HNS) is None
    vpvc["spec"]["resources"]["requests"]["storage"] = "1024Mi"  # the same size, spelled otherwise
    assert host_pvc_update(vpvc, host, vcluster=VC, host_namespace=HNS) is None


def test_label_and_annotation_changes_propagate() -> None:
    vpvc = pvc()
    host = created_host(vpvc)
    host["metadata"]["annotations"]["host-tool"] = "keep"
    vpvc["metadata"]["labels"] = {"app": "db2"}
    vpvc["metadata"]["annotations"] = {}
    patch = host_pvc_update(vpvc, host, vcluster=VC, host_namespace=HNS)
    assert patch is not None
    assert patch["metadata"]["labels"] == {"app": "db2"}
    assert patch["metadata"]["annotations"]["team"] is None
    assert "host-tool" not in patch["metadata"]["annotations"]


sizes = st.integers(min_value=1, max_value=4096).map(lambda n: f"{n}Mi")
label_maps = st.dictionaries(
    st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True), st.text("abc", max_size=3), max_size=3
)


@given(
    created=sizes,
    wanted=sizes,
    labels=label_maps,
    annotations=label_maps,
    vac=st.sampled_from([None, "gold", "silver"]),
)
def test_update_converges_in_one_patch(
    created: str, wanted: str, labels: dict[str, str], annotations: dict[str, str], vac: str | None
) -> None:
    """Whatever the tenant changed, one patch brings the host claim to a state needing no more."""
    vpvc = pvc()
    vpvc["spec"]["resources"]["requests"]["storage"] = created
    host = created_host(vpvc)
    vpvc["spec"]["resources"]["requests"]["storage"] = wanted
    vpvc["metadata"]["labels"] = labels
    vpvc["metadata"]["annotations"] = annotations
    if vac:
        vpvc["spec"]["volumeAttributesClassName"] = vac
    patch = host_pvc_update(vpvc, host, vcluster=VC, host_namespace=HNS)
    patched = merge_patch(host, patch) if patch else host
    assert host_pvc_update(vpvc, patched, vcluster=VC, host_namespace=HNS) is None
    host_size = parse_quantity(patched["spec"]["resources"]["requests"]["storage"])
    assert host_size == max(parse_quantity(created), parse_quantity(wanted))


# --- host → virtual


def bound_host(vpvc: dict[str, Any], volume: str = "pv-1") -> dict[str, Any]:
    host = created_host(vpvc)
    host["spec"]["volumeName"] = volume
    host["metadata"]["annotations"].update(
        {ANN_BIND_COMPLETED: "yes", ANN_BOUND_BY_CONTROLLER: "yes", ANN_STORAGE_PROVISIONER: "x.csi"}
    )
    host["status"] = {
        "phase": "Bound",
        "accessModes": ["ReadWriteOnce"],
        "capacity": {"storage": "2Gi"},
    }
    return host


def test_binding_comes_back_to_the_virtual_claim() -> None:
    vpvc = pvc()
    host = bound_host(vpvc)
    assert virtual_pvc_patch(vpvc, host) == {
        "metadata": {
            "annotations": {
                ANN_BIND_COMPLETED: "yes",
                ANN_BOUND_BY_CONTROLLER: "yes",
                ANN_STORAGE_PROVISIONER: "x.csi",
            }
        },
        "spec": {"volumeName": "pv-1"},
    }
    status = virtual_pvc_status_patch(vpvc, host)
    assert status == {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"}, "phase": "Bound"}
    synced = merge_patch(vpvc, virtual_pvc_patch(vpvc, host))
    synced["status"] = merge_patch(synced["status"], status)
    assert synced["status"] == host["status"]
    assert virtual_pvc_patch(synced, host) is None
    assert virtual_pvc_status_patch(synced, host) is None
    assert is_bound(synced) and not is_bound(vpvc)


def test_unbound_host_claim_changes_nothing_virtual() -> None:
    vpvc = pvc()
    assert virtual_pvc_patch(vpvc, created_host(vpvc)) is None
    assert virtual_pvc_status_patch(vpvc, created_host(vpvc)) is None


def test_annotation_removed_on_host_is_removed_virtually_and_tenant_keys_stay() -> None:
    vpvc = pvc()
    vpvc["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER] = "yes"
    host = created_host(vpvc)
    patch = virtual_pvc_patch(vpvc, host)
    assert patch == {"metadata": {"annotations": {ANN_BOUND_BY_CONTROLLER: None}}}


def test_volume_name_is_set_once() -> None:
    vpvc = pvc(volumeName="tenant-choice")
    patch = virtual_pvc_patch(vpvc, bound_host(vpvc, "other"))
    assert patch is not None and "spec" not in patch


# --- fake persistent volumes


def test_fake_persistent_volume() -> None:
    vpvc = pvc(namespace="prod", volumeMode="Block")
    pv = fake_persistent_volume("pvc-123", vpvc, {"storage": "2Gi"})
    assert pv["metadata"]["name"] == "pvc-123"
    assert pv["metadata"]["labels"] == {FAKE_PV_LABEL: "true"}
    assert is_fake_pv(pv)
    spec = pv["spec"]
    assert spec["csi"] == {"driver": FAKE_CSI_DRIVER, "volumeHandle": "pvc-123"}
    assert spec["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "prod",
        "name": "data",
        "uid": "uid-prod-data",
    }
    assert spec["capacity"] == {"storage": "2Gi"}
    assert spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["storageClassName"] == "standard"
    assert spec["volumeMode"] == "Block"
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"


def test_fake_persistent_volume_falls_back_to_the_request() -> None:
    vpvc = pvc()
    del vpvc["spec"]["storageClassName"]
    pv = fake_persistent_volume("pv-1", vpvc)
    assert pv["spec"]["capacity"] == {"storage": "1Gi"}
    assert pv["spec"]["storageClassName"] == ""
    assert not is_fake_pv({"metadata": {"name": "tenant-pv"}})


def test_claimed_volume() -> None:
    assert claimed_volume(pvc()) is None
    assert claimed_volume(pvc(volumeName="pv-9")) == "pv-9"


def test_volume_name_waits_for_the_host_phase() -> None:
    vpvc = pvc()
    host = bound_host(vpvc)
    host["status"] = {"phase": "Pending"}  # the binder wrote volumeName, not yet the phase
    patch = virtual_pvc_patch(vpvc, host)
    assert patch is not None and "spec" not in patch


def test_fake_volume_grows_with_its_claim() -> None:
    vpvc = pvc()
    pv = fake_persistent_volume("pv-1", vpvc, {"storage": "2Gi"})
    vpvc["status"] = {"phase": "Bound", "capacity": {"storage": "2Gi"}}
    assert fake_pv_capacity_patch(pv, vpvc) is None
    vpvc["status"]["capacity"] = {"storage": "3Gi"}
    assert fake_pv_capacity_patch(pv, vpvc) == {"spec": {"capacity": {"storage": "3Gi"}}}
    assert fake_pv_capacity_patch(pv, pvc()) is None  # no status capacity yet: keep what it has


def test_status_patch_removes_what_the_host_dropped() -> None:
    vpvc = pvc()
    vpvc["status"] = {
        "phase": "Bound",
        "capacity": {"storage": "2Gi"},
        "conditions": [{"type": "Resizing", "status": "True"}],
    }
    host = bound_host(pvc())
    assert virtual_pvc_status_patch(vpvc, host) == {"accessModes": ["ReadWriteOnce"], "conditions": None}


json_leaves = st.one_of(
    st.booleans(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)
)
json_docs = st.recursive(
    json_leaves,
    lambda children: st.dictionaries(st.sampled_from("abcd"), children, max_size=4),
    max_leaves=10,
)
json_objects = st.dictionaries(st.sampled_from("abcd"), json_docs, max_size=4)


@given(json_objects, json_objects)
def test_merge_patch_between_round_trips(current: dict[str, Any], desired: dict[str, Any]) -> None:
    assert merge_patch(current, merge_patch_between(current, desired)) == desired
    assert merge_patch_between(desired, desired) == {}
