"""REST paths of resource types: the one place where a wrong segment would address the wrong object."""

from __future__ import annotations

import pytest

from syncer.kube import resources
from syncer.kube.resources import (
    CRDS,
    INGRESSES,
    NAMESPACES,
    NODES,
    PODS,
    PVS,
    SUBJECT_ACCESS_REVIEWS,
    ResourceType,
    for_kind,
)


@pytest.mark.parametrize(
    ("rt", "namespace", "name", "subresource", "expected"),
    [
        (PODS, None, None, None, "/api/v1/pods"),
        (PODS, "team", None, None, "/api/v1/namespaces/team/pods"),
        (PODS, "team", "web", None, "/api/v1/namespaces/team/pods/web"),
        (PODS, "team", "web", "status", "/api/v1/namespaces/team/pods/web/status"),
        (PODS, "team", "web", "binding", "/api/v1/namespaces/team/pods/web/binding"),
        (NODES, None, "node-1", None, "/api/v1/nodes/node-1"),
        (NAMESPACES, None, "team", None, "/api/v1/namespaces/team"),
        (INGRESSES, "team", "web", None, "/apis/networking.k8s.io/v1/namespaces/team/ingresses/web"),
        (INGRESSES, None, None, None, "/apis/networking.k8s.io/v1/ingresses"),
        (
            CRDS,
            None,
            "x.example.com",
            None,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.example.com",
        ),
        (SUBJECT_ACCESS_REVIEWS, None, None, None, "/apis/authorization.k8s.io/v1/subjectaccessreviews"),
    ],
)
def test_paths(
    rt: ResourceType, namespace: str | None, name: str | None, subresource: str | None, expected: str
) -> None:
    assert rt.path(namespace, name, subresource) == expected


def test_untrusted_names_cannot_change_the_url() -> None:
    assert PODS.path("team", "a/../../secrets") == "/api/v1/namespaces/team/pods/a%2F..%2F..%2Fsecrets"
    assert PODS.path("te?am", "x#y") == "/api/v1/namespaces/te%3Fam/pods/x%23y"


def test_cluster_scoped_types_refuse_a_namespace() -> None:
    with pytest.raises(ValueError, match="cluster-scoped"):
        PVS.path("team", "pv-1")


def test_subresource_needs_a_name_and_segments_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="subresource"):
        PODS.path("team", None, "status")
    with pytest.raises(ValueError, match="empty name"):
        PODS.path("team", "")


def test_api_version_and_resource_spelling() -> None:
    assert PODS.api_version == "v1"
    assert PODS.resource == str(PODS) == "pods"
    assert INGRESSES.api_version == "networking.k8s.io/v1"
    assert INGRESSES.resource == "ingresses.networking.k8s.io"


def test_custom_types_and_hashability() -> None:
    widget = ResourceType("example.com", "v1alpha1", "widgets", "Widget")
    assert widget.path("ns", "w") == "/apis/example.com/v1alpha1/namespaces/ns/widgets/w"
    assert {widget: 1}[ResourceType("example.com", "v1alpha1", "widgets", "Widget")] == 1


def test_lookup_by_kind_covers_every_constant() -> None:
    constants = [value for value in vars(resources).values() if isinstance(value, ResourceType)]
    assert len(constants) == 20
    for rt in constants:
        assert for_kind(rt.api_version, rt.kind) is rt
    assert for_kind("v1", "NoSuchKind") is None


@pytest.mark.parametrize(
    ("rt", "namespaced"),
    [
        (resources.PODS, True),
        (resources.SERVICES, True),
        (resources.ENDPOINTS, True),
        (resources.ENDPOINT_SLICES, True),
        (resources.CONFIGMAPS, True),
        (resources.SECRETS, True),
        (resources.EVENTS, True),
        (resources.PVCS, True),
        (resources.SERVICE_ACCOUNTS, True),
        (resources.INGRESSES, True),
        (resources.NETWORK_POLICIES, True),
        (resources.LEASES, True),
        (resources.PVS, False),
        (resources.NODES, False),
        (resources.NAMESPACES, False),
        (resources.STORAGE_CLASSES, False),
        (resources.PRIORITY_CLASSES, False),
        (resources.TOKEN_REVIEWS, False),
        (resources.SUBJECT_ACCESS_REVIEWS, False),
        (resources.CRDS, False),
    ],
)
def test_scopes(rt: ResourceType, namespaced: bool) -> None:
    assert rt.namespaced is namespaced
