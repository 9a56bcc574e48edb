"""The Kubernetes resource types the syncer talks about, and how their REST paths are built.

Why our own small table instead of discovery: the syncer works with a fixed set of built-in kinds whose
group, version, plural and scope have been stable for years, so a constant per kind gives typo-proof
call sites (`client.get(PODS, name, ns)`) and costs no round trip at start-up. A `ResourceType` can
still be built by hand for anything else (a CRD found through discovery, for instance).

Path building quotes each name segment, so a name that contains `/` or `?` can never turn into a
different URL (a name coming from a tenant is untrusted input).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "BY_KIND",
    "CONFIGMAPS",
    "CRDS",
    "ENDPOINTS",
    "ENDPOINT_SLICES",
    "EVENTS",
    "INGRESSES",
    "LEASES",
    "NAMESPACES",
    "NETWORK_POLICIES",
    "NODES",
    "PODS",
    "PRIORITY_CLASSES",
    "PVCS",
    "PVS",
    "SECRETS",
    "SERVICES",
    "SERVICE_ACCOUNTS",
    "STORAGE_CLASSES",
    "SUBJECT_ACCESS_REVIEWS",
    "TOKEN_REVIEWS",
    "ResourceType",
    "for_kind",
]


def _segment(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"empty {what} in resource path")
    return quote(value, safe="")


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: where it lives (`group`/`version`/`plural`), what it holds (`kind`), its scope.

    `group` is "" for the core API (served under `/api/v1`, every other group under `/apis/<g>/<v>`).
    Frozen and hashable, so it can key dictionaries (one reflector per type and namespace, for example).
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """The `apiVersion` field of objects of this type: `v1` for core, `<group>/<version>` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """`plural[.group]`, the kubectl/RBAC spelling; bounded, so it is safe as a metrics label."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path (without the server) of the collection, of one object or of its subresource.

        A namespaced type without `namespace` gives the all-namespaces collection (lists and watches
        across the cluster); a cluster-scoped type refuses a namespace, because silently dropping it
        would address a different object than the caller meant.
        """
        if namespace is not None and not self.namespaced:
            raise ValueError(f"{self.resource} is cluster-scoped; got namespace {namespace!r}")
        if subresource is not None and name is None:
            raise ValueError("a subresource needs an object name")
        parts = ["/api", self.version] if not self.group else ["/apis", self.group, self.version]
        if namespace is not None:
            parts += ["namespaces", _segment(namespace, "namespace")]
        parts.append(self.plural)
        if name is not None:
            parts.append(_segment(name, "name"))
        if subresource is not None:
            parts.append(_segment(subresource, "subresource"))
        return "/".join(parts)

    def __str__(self) -> str:
        return self.resource


PODS = ResourceType("", "v1", "pods", "Pod")
SERVICES = ResourceType("", "v1", "services", "Service")
ENDPOINTS = ResourceType("", "v1", "endpoints", "Endpoints")
ENDPOINT_SLICES = ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap")
SECRETS = ResourceType("", "v1", "secrets", "Secret")
EVENTS = ResourceType("", "v1", "events", "Event")
PVCS = ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
PVS = ResourceType("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False)
NODES = ResourceType("", "v1", "nodes", "Node", namespaced=False)
NAMESPACES = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICE_ACCOUNTS = ResourceType("", "v1", "serviceaccounts", "ServiceAccount")
INGRESSES = ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress")
STORAGE_CLASSES = ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", namespaced=False)
PRIORITY_CLASSES = ResourceType(
    "scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", namespaced=False
)
NETWORK_POLICIES = ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")
TOKEN_REVIEWS = ResourceType("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False)
SUBJECT_ACCESS_REVIEWS = ResourceType(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False
)
CRDS = ResourceType(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False
)

BY_KIND: Mapping[tuple[str, str], ResourceType] = {
    (rt.api_version, rt.kind): rt
    for rt in (
        PODS,
        SERVICES,
        ENDPOINTS,
        ENDPOINT_SLICES,
        CONFIGMAPS,
        SECRETS,
        EVENTS,
        PVCS,
        PVS,
        NODES,
        NAMESPACES,
        SERVICE_ACCOUNTS,
        INGRESSES,
        STORAGE_CLASSES,
        PRIORITY_CLASSES,
        NETWORK_POLICIES,
        LEASES,
        TOKEN_REVIEWS,
        SUBJECT_ACCESS_REVIEWS,
        CRDS,
    )
}
"""The constants above keyed by `(apiVersion, kind)`: owner references and `involvedObject` name a kind,
and the syncer needs the matching resource to act on it."""


def for_kind(api_version: str, kind: str) -> ResourceType | None:
    """The known resource type for an object's `apiVersion`/`kind`, or None if it is not in the table."""
    return BY_KIND.get((api_version, kind))
