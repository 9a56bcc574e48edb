"""Host StorageClasses → read-only virtual copies."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncer.translate.storageclasses import (
    SYNCED_LABEL,
    is_synced_copy,
    needs_recreate,
    storage_class_patch,
    virtual_storage_class,
)
from tests.unit.test_translate_volumes import merge_patch


def host_class(**fields: Any) -> dict[str, Any]:
    """A class as the host API server returns it (reclaimPolicy/volumeBindingMode defaulted)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "fast",
            "uid": "host-uid",
            "resourceVersion": "9",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"tier": "ssd", "vcluster.loft.sh/managed-by": "outer"},
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            "managedFields": [{"manager": "kubectl"}],
        },
        "provisioner": "csi.example.com",
        "parameters": {"type": "ssd"},
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
        **fields,
    }


def as_created(desired: dict[str, Any]) -> dict[str, Any]:
    created = copy.deepcopy(desired)
    created["metadata"].update({"uid": "virtual-uid", "resourceVersion": "1"})
    return created


def test_copy_keeps_everything_but_server_fields_and_reserved_keys() -> None:
    copied = virtual_storage_class(host_class(mountOptions=["ro"]))
    assert copied == {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "fast",
            "labels": {"tier": "ssd", SYNCED_LABEL: "true"},
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "csi.example.com",
        "parameters": {"type": "ssd"},
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
        "mountOptions": ["ro"],
    }
    assert is_synced_copy(copied)
    assert not is_synced_copy(host_class())


def test_a_host_label_cannot_forge_the_synced_marker() -> None:
    host = host_class()
    host["metadata"]["labels"][SYNCED_LABEL] = "false"
    assert virtual_storage_class(host)["metadata"]["labels"][SYNCED_LABEL] == "true"
    host["metadata"]["labels"] = {}
    tenant = {"metadata": {"name": "fast", "labels": {}}}
    assert not is_synced_copy(tenant)


def test_converged_copy_needs_nothing() -> None:
    desired = virtual_storage_class(host_class())
    current = as_created(desired)
    assert storage_class_patch(desired, current) is None
    assert not needs_recreate(desired, current)


def test_tenant_edits_are_reverted() -> None:
    desired = virtual_storage_class(host_class())
    current = as_created(desired)
    current["metadata"]["labels"]["mine"] = "x"
    current["metadata"]["annotations"] = {}
    current["allowVolumeExpansion"] = False
    current["mountOptions"] = ["debug"]
    patch = storage_class_patch(desired, current)
    assert patch == {
        "metadata": {
            "labels": {"mine": None},
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "allowVolumeExpansion": True,
        "mountOptions": None,
    }
    assert storage_class_patch(desired, merge_patch(current, patch)) is None


def test_immutable_change_means_recreate() -> None:
    desired = virtual_storage_class(host_class(parameters={"type": "hdd"}))
    current = as_created(virtual_storage_class(host_class()))
    assert needs_recreate(desired, current)


json_maps = st.dictionaries(st.sampled_from(["a", "b", "c", "example.com/d"]), st.text("xy", max_size=2))


@given(labels=json_maps, annotations=json_maps, expand=st.sampled_from([None, True, False]), edits=json_maps)
def test_patch_always_converges(
    labels: dict[str, str], annotations: dict[str, str], expand: bool | None, edits: dict[str, str]
) -> None:
    host = host_class()
    host["metadata"]["labels"] = labels
    host["metadata"]["annotations"] = annotations
    host.pop("allowVolumeExpansion")
    if expand is not None:
        host["allowVolumeExpansion"] = expand
    desired = virtual_storage_class(host)
    current = as_created(virtual_storage_class(host_class()))
    current["metadata"]["labels"].update(edits)
    patch = storage_class_patch(desired, current)
    patched = merge_patch(current, patch) if patch else current
    assert storage_class_patch(desired, patched) is None
    assert patched["metadata"]["labels"] == desired["metadata"]["labels"]
