"""Exactly the host permissions the syncer uses: one namespaced Role, nothing cluster-wide by default.

This list is the source of truth. The Helm chart renders the same rules (a chart test compares
them), the local driver grants them, and the end-to-end tests run the syncer with only this Role in
its host namespace — so a verb the code needs but the Role lacks fails a test instead of a user.
"""

from __future__ import annotations

from typing import Any

_CRUD = ["get", "list", "watch", "create", "update", "patch", "delete"]

HOST_ROLE_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": ["pods", "services", "endpoints", "configmaps", "secrets", "persistentvolumeclaims"],
        "verbs": _CRUD,
    },
    # The proxy sends these to the host with the syncer's credentials.
    {
        "apiGroups": [""],
        "resources": ["pods/exec", "pods/attach", "pods/portforward"],
        "verbs": ["create", "get"],
    },
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    # Readiness-gate conditions and `kubectl debug` containers of tenant pods.
    {"apiGroups": [""], "resources": ["pods/status", "pods/ephemeralcontainers"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": _CRUD},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
    # Read-only: to find the workload that owns the syncer pod.
    {"apiGroups": ["apps"], "resources": ["statefulsets", "replicasets", "deployments"], "verbs": ["get"]},
]

# Only with --sync=+storageclasses: host StorageClasses are read and mirrored into the virtual cluster.
STORAGE_CLASS_CLUSTER_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]},
]


def role(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": HOST_ROLE_RULES,
    }


def role_binding(name: str, namespace: str, service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
