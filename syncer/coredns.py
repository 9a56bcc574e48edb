"""CoreDNS inside the virtual cluster, applied by the syncer (as vcluster 0.5 does).

Synced pods resolve names through the HOST ClusterIP of the virtual `kube-system/kube-dns` Service,
so that Service (and the CoreDNS pod behind it) must exist in the virtual cluster and be synced like
any other. k3s would deploy CoreDNS itself; the chart switches that off so there is exactly one,
owned by us, whatever distro runs the control plane. Server-side apply makes this idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from .kube.client import KubeClient
from .kube.resources import CONFIGMAPS, SERVICE_ACCOUNTS, SERVICES, ResourceType

log = logging.getLogger(__name__)

DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment")
CLUSTER_ROLES = ResourceType(
    "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False
)
CLUSTER_ROLE_BINDINGS = ResourceType(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
)
IMAGE = "coredns/coredns:1.12.1"
FIELD_MANAGER = "vcluster-py-syncer"
LABELS = {"k8s-app": "kube-dns"}


def manifests(cluster_domain: str) -> list[tuple[ResourceType, dict[str, Any]]]:
    ns = "kube-system"
    corefile = (
        ".:1053 {\n    errors\n    health\n    ready\n"
        f"    kubernetes {cluster_domain} in-addr.arpa ip6.arpa {{\n"
        "      pods insecure\n      fallthrough in-addr.arpa ip6.arpa\n    }\n"
        "    prometheus :9153\n    forward . /etc/resolv.conf\n    cache 30\n    loop\n    reload\n"
        "    loadbalance\n}\n"
    )
    return [
        (
            SERVICE_ACCOUNTS,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": ns}},
        ),
        (
            CLUSTER_ROLES,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "system:coredns"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["endpoints", "services", "pods", "namespaces"],
                        "verbs": ["list", "watch"],
                    },
                    {
                        "apiGroups": ["discovery.k8s.io"],
                        "resources": ["endpointslices"],
                        "verbs": ["list", "watch"],
                    },
                ],
            },
        ),
        (
            CLUSTER_ROLE_BINDINGS,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "system:coredns"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:coredns",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
            },
        ),
        (
            CONFIGMAPS,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "coredns", "namespace": ns},
                "data": {"Corefile": corefile},
            },
        ),
        (
            DEPLOYMENTS,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "coredns", "namespace": ns, "labels": LABELS},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": LABELS},
                    "template": {
                        "metadata": {"labels": LABELS},
                        "spec": {
                            "serviceAccountName": "coredns",
                            "dnsPolicy": "Default",
                            "containers": [
                                {
                                    "name": "coredns",
                                    "image": IMAGE,
                                    "args": ["-conf", "/etc/coredns/Corefile"],
                                    "ports": [
                                        {"name": "dns", "containerPort": 1053, "protocol": "UDP"},
                                        {"name": "dns-tcp", "containerPort": 1053, "protocol": "TCP"},
                                        {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                                    ],
                                    "securityContext": {
                                        "runAsNonRoot": True,
                                        "runAsUser": 1000,
                                        "allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]},
                                    },
                                    "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                                }
                            ],
                            "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                        },
                    },
                },
            },
        ),
        (
            SERVICES,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": ns, "labels": LABELS},
                "spec": {
                    "selector": LABELS,
                    "ports": [
                        {"name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"},
                        {"name": "metrics", "port": 9153, "targetPort": 9153, "protocol": "TCP"},
                    ],
                },
            },
        ),
    ]


async def apply(client: KubeClient, cluster_domain: str) -> None:
    for resource, body in manifests(cluster_domain):
        meta = body["metadata"]
        await client.patch(
            resource,
            meta["name"],
            body,
            meta.get("namespace"),
            patch_type="apply",
            field_manager=FIELD_MANAGER,
            force=True,
        )
    log.info("coredns applied in the virtual cluster")
