"""Host metadata, ownership (what makes ambiguous names safe) and selector scoping."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncer.translate.metadata import (
    Ownership,
    host_annotations,
    host_labels,
    host_metadata,
    host_selector,
    metadata_patch,
    ownership,
    selector_matches,
    translate_label_selector,
    virtual_key_of,
)
from syncer.translate.names import (
    ANN_MANAGED_ANNOTATIONS,
    ANN_MANAGED_LABELS,
    ANN_OBJECT_KIND,
    ANN_OBJECT_NAME,
    ANN_OBJECT_NAMESPACE,
    ANN_OBJECT_UID,
    MARKER_LABEL,
    NAMESPACE_LABEL,
    host_name,
)

dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
subdomains = st.lists(dns_labels, min_size=1, max_size=4).map(".".join)


def configmap(name: str = "app", namespace: str = "default", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "resourceVersion": "42",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "x"}],
            "finalizers": ["example.com/keep"],
            "managedFields": [{"manager": "kubectl"}],
            **meta,
        },
        "data": {"k": "v"},
    }


def host_copy(vobj: dict[str, Any], kind: str = "ConfigMap", vcluster: str = "vc1") -> dict[str, Any]:
    return {"metadata": host_metadata(vobj, vcluster=vcluster, host_namespace="team-a", kind=kind)}


# --- labels and annotations ------------------------------------------------------------------------


def test_labels_are_copied_verbatim_plus_marker_and_namespace() -> None:
    labels = host_labels({"app": "web", "app.kubernetes.io/name": "web"}, "vc1", "default")
    assert labels == {
        "app": "web",
        "app.kubernetes.io/name": "web",
        MARKER_LABEL: "vc1",
        NAMESPACE_LABEL: "default",
    }


def test_tenant_cannot_forge_reserved_labels() -> None:
    forged = {MARKER_LABEL: "other-vc", NAMESPACE_LABEL: "kube-system", "vcluster.loft.sh/anything": "x"}
    labels = host_labels(forged, "vc1", "default")
    assert labels == {MARKER_LABEL: "vc1", NAMESPACE_LABEL: "default"}


def test_annotations_drop_reserved_keys_and_record_origin() -> None:
    annotations = host_annotations(
        {"note": "hi", ANN_OBJECT_NAME: "forged", "vcluster.loft.sh/token-abc": "stolen"},
        name="app",
        namespace="default",
        uid="u1",
        kind="ConfigMap",
    )
    assert annotations == {
        "note": "hi",
        ANN_OBJECT_NAME: "app",
        ANN_OBJECT_NAMESPACE: "default",
        ANN_OBJECT_UID: "u1",
        ANN_OBJECT_KIND: "ConfigMap",
        ANN_MANAGED_ANNOTATIONS: "note",
    }


def test_no_managed_list_when_nothing_was_copied() -> None:
    annotations = host_annotations(None, name="a", namespace="b", uid="c", kind="Secret")
    assert ANN_MANAGED_ANNOTATIONS not in annotations


def test_host_metadata_keeps_only_what_makes_sense_on_the_host() -> None:
    vobj = configmap(labels={"b": "2", "a": "1"}, annotations={"z": "1"})
    meta = host_metadata(vobj, vcluster="vc1", host_namespace="team-a", kind="ConfigMap")
    assert set(meta) == {"name", "namespace", "labels", "annotations"}
    assert meta["name"] == "app-x-default-x-vc1"
    assert meta["namespace"] == "team-a"
    assert meta["annotations"][ANN_MANAGED_LABELS] == "a\nb"
    assert meta["annotations"][ANN_OBJECT_UID] == "uid-default-app"


def test_host_metadata_takes_replacement_tenant_annotations() -> None:
    vobj = configmap(annotations={"original": "1"})
    meta = host_metadata(
        vobj, vcluster="vc1", host_namespace="t", kind="ConfigMap", annotations={"extra": "2"}
    )
    assert "extra" in meta["annotations"] and "original" not in meta["annotations"]


def test_host_metadata_refuses_cluster_scoped_objects() -> None:
    with pytest.raises(ValueError):
        host_metadata(
            {"metadata": {"name": "fast"}}, vcluster="vc1", host_namespace="t", kind="PriorityClass"
        )


@given(subdomains, dns_labels)
def test_reverse_mapping_returns_the_virtual_object(name: str, namespace: str) -> None:
    assert virtual_key_of(host_copy(configmap(name, namespace))) == (namespace, name)


def test_reverse_mapping_needs_both_annotations() -> None:
    assert virtual_key_of({"metadata": {"annotations": {ANN_OBJECT_NAME: "a"}}}) is None
    assert virtual_key_of({}) is None


# --- ownership -------------------------------------------------------------------------------------


def test_own_copy_is_ours() -> None:
    vobj = configmap()
    verdict = ownership(
        host_copy(vobj),
        vcluster="vc1",
        virtual_namespace="default",
        virtual_name="app",
        kind="ConfigMap",
        virtual_uid="uid-default-app",
    )
    assert verdict is Ownership.OURS


@pytest.mark.parametrize("marker", [None, "vc2", ""])
def test_objects_without_our_marker_are_foreign(marker: str | None) -> None:
    obj = host_copy(configmap())
    if marker is None:
        del obj["metadata"]["labels"][MARKER_LABEL]
    else:
        obj["metadata"]["labels"][MARKER_LABEL] = marker
    verdict = ownership(
        obj, vcluster="vc1", virtual_namespace="default", virtual_name="app", kind="ConfigMap"
    )
    assert verdict is Ownership.FOREIGN


def test_the_ambiguous_pair_is_refused() -> None:
    first = host_copy(configmap("web-x-prod", "team"))
    assert first["metadata"]["name"] == host_name("web", "prod-x-team", "vc1")
    verdict = ownership(
        first, vcluster="vc1", virtual_namespace="prod-x-team", virtual_name="web", kind="ConfigMap"
    )
    assert verdict is Ownership.OTHER_OBJECT


def test_same_name_of_another_kind_is_refused() -> None:
    obj = host_copy(configmap(), kind="Secret")
    verdict = ownership(
        obj, vcluster="vc1", virtual_namespace="default", virtual_name="app", kind="ConfigMap"
    )
    assert verdict is Ownership.OTHER_OBJECT


def test_marked_object_without_proof_is_refused() -> None:
    obj = {"metadata": {"labels": {MARKER_LABEL: "vc1"}, "annotations": {}}}
    verdict = ownership(
        obj, vcluster="vc1", virtual_namespace="default", virtual_name="app", kind="ConfigMap"
    )
    assert verdict is Ownership.OTHER_OBJECT


def test_copy_of_a_previous_incarnation_is_reported_only_when_asked() -> None:
    obj = host_copy(configmap())
    common: dict[str, Any] = {
        "vcluster": "vc1",
        "virtual_namespace": "default",
        "virtual_name": "app",
        "kind": "ConfigMap",
    }
    assert ownership(obj, **common, virtual_uid="new-uid") is Ownership.PREVIOUS_INCARNATION
    assert ownership(obj, **common) is Ownership.OURS


@given(dns_labels, dns_labels, dns_labels)
def test_every_ambiguous_pair_is_caught(first: str, second: str, third: str) -> None:
    a_name, a_namespace = f"{first}-x-{second}", third
    b_name, b_namespace = first, f"{second}-x-{third}"
    assert host_name(a_name, a_namespace, "vc1") == host_name(b_name, b_namespace, "vc1")
    copy_of_a = host_copy(configmap(a_name, a_namespace))
    kwargs: dict[str, Any] = {"vcluster": "vc1", "kind": "ConfigMap"}
    assert (
        ownership(copy_of_a, virtual_namespace=a_namespace, virtual_name=a_name, **kwargs) is Ownership.OURS
    )
    assert (
        ownership(copy_of_a, virtual_namespace=b_namespace, virtual_name=b_name, **kwargs)
        is Ownership.OTHER_OBJECT
    )


# --- updates ---------------------------------------------------------------------------------------


def test_metadata_patch_is_none_on_a_no_op() -> None:
    meta = host_copy(configmap(labels={"a": "1"}, annotations={"n": "1"}))["metadata"]
    assert metadata_patch(meta, meta) is None


def test_metadata_patch_removes_owned_keys_and_keeps_host_only_keys() -> None:
    old = host_copy(configmap(labels={"a": "1", "gone": "x"}, annotations={"n": "1", "old": "x"}))["metadata"]
    current = {
        **old,
        "labels": {**old["labels"], "host-tool": "keep"},
        "annotations": {**old["annotations"], "host-tool/ann": "keep", "vcluster.loft.sh/stale": "x"},
    }
    desired = host_copy(configmap(labels={"a": "2"}, annotations={"n": "1"}))["metadata"]
    patch = metadata_patch(desired, current)
    assert patch is not None
    assert patch["labels"] == {"a": "2", "gone": None}
    assert patch["annotations"] == {
        "old": None,
        "vcluster.loft.sh/stale": None,
        ANN_MANAGED_LABELS: "a",
        ANN_MANAGED_ANNOTATIONS: "n",
    }


# --- selectors -------------------------------------------------------------------------------------


def test_service_selector_is_scoped_to_the_tenant_namespace() -> None:
    selector = host_selector(
        {"app": "web", MARKER_LABEL: "other", NAMESPACE_LABEL: "kube-system"}, "vc1", "prod"
    )
    assert selector == {"app": "web", MARKER_LABEL: "vc1", NAMESPACE_LABEL: "prod"}


@pytest.mark.parametrize("empty", [None, {}])
def test_selectorless_service_stays_selectorless(empty: dict[str, str] | None) -> None:
    assert host_selector(empty, "vc1", "prod") == {}


def test_null_label_selector_stays_null() -> None:
    assert translate_label_selector(None, "vc1", "prod") is None


def test_label_selector_gets_marker_and_namespace() -> None:
    selector = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]}
    assert translate_label_selector(selector, "vc1", "prod") == {
        "matchLabels": {"app": "web", MARKER_LABEL: "vc1", NAMESPACE_LABEL: "prod"},
        "matchExpressions": [{"key": "tier", "operator": "Exists"}],
    }


def test_named_namespaces_become_an_in_requirement() -> None:
    translated = translate_label_selector({}, "vc1", "prod", namespaces=["b", "a", "b"])
    assert translated == {
        "matchLabels": {MARKER_LABEL: "vc1"},
        "matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "In", "values": ["a", "b"]}],
    }
    assert selector_matches(translated, host_labels({}, "vc1", "a"))
    assert not selector_matches(translated, host_labels({}, "vc1", "c"))


def test_no_namespace_at_all_matches_nothing() -> None:
    translated = translate_label_selector({}, "vc1", "prod", namespaces=[])
    assert not selector_matches(translated, host_labels({}, "vc1", "prod"))


def test_all_namespaces_still_means_only_this_tenant() -> None:
    translated = translate_label_selector({}, "vc1", "prod", all_namespaces=True)
    assert selector_matches(translated, host_labels({}, "vc1", "anything"))
    assert not selector_matches(translated, host_labels({}, "vc2", "anything"))


def test_tenant_reserved_requirements_fail_closed() -> None:
    escape = {"matchLabels": {NAMESPACE_LABEL: "kube-system"}}
    translated = translate_label_selector(escape, "vc1", "prod")
    assert not selector_matches(translated, host_labels({}, "vc1", "kube-system"))
    assert not selector_matches(translated, host_labels({}, "vc1", "prod"))


def test_selector_semantics() -> None:
    labels = {"a": "1", "b": "2"}
    assert selector_matches({}, labels)
    assert not selector_matches(None, labels)
    assert selector_matches({"matchExpressions": [{"key": "c", "operator": "DoesNotExist"}]}, labels)
    assert selector_matches(
        {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["2"]}]}, labels
    )
    assert not selector_matches(
        {"matchExpressions": [{"key": "a", "operator": "In", "values": ["2"]}]}, labels
    )
    with pytest.raises(ValueError):
        selector_matches({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, labels)


keys = st.sampled_from(["app", "tier", "zone"])
values = st.sampled_from(["a", "b"])
requirements = st.one_of(
    st.builds(lambda k, v: {"key": k, "operator": "In", "values": v}, keys, st.lists(values, min_size=1)),
    st.builds(lambda k, v: {"key": k, "operator": "NotIn", "values": v}, keys, st.lists(values, min_size=1)),
    st.builds(lambda k: {"key": k, "operator": "Exists"}, keys),
    st.builds(lambda k: {"key": k, "operator": "DoesNotExist"}, keys),
)
selectors = st.builds(
    lambda labels, exprs: {"matchLabels": labels, "matchExpressions": exprs},
    st.dictionaries(keys, values, max_size=2),
    st.lists(requirements, max_size=3),
)


@given(
    selectors,
    st.dictionaries(keys, values),
    st.sampled_from(["prod", "dev"]),
    st.sampled_from(["prod", "dev"]),
)
def test_scoped_selector_selects_exactly_the_tenant_pods_it_selected_virtually(
    selector: dict[str, Any], labels: dict[str, str], selector_namespace: str, pod_namespace: str
) -> None:
    translated = translate_label_selector(selector, "vc1", selector_namespace)
    expected = selector_matches(selector, labels) and selector_namespace == pod_namespace
    assert selector_matches(translated, host_labels(labels, "vc1", pod_namespace)) == expected
    assert not selector_matches(translated, host_labels(labels, "other-vc", pod_namespace))
