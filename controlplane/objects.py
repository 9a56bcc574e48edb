"""Helpers shared by the controller, the API and the CLI: objects, conditions, kubeconfigs."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import re
from typing import Any

import yaml

from syncer.kube.client import ApiError, KubeClient
from syncer.kube.resources import SECRETS, SERVICES, ResourceType, for_kind

from .resources import kubeconfig_secret

Obj = dict[str, Any]
FIELD_MANAGER = "vcluster-py-controlplane"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[Obj],
    type_: str,
    status: bool,
    reason: str = "",
    message: str = "",
    severity: str = "",
) -> list[Obj]:
    """Conditions with `type_` set; lastTransitionTime moves only when the status flips.

    A condition keeps its place in the list (a new one goes last): the controller writes status more
    than once per reconcile, and a list whose order changed would be a change, so a write, so a watch
    event and another reconcile, for ever. A False condition is an Error when it has a reason, unless
    `severity` says otherwise (a template with changes not yet synced is news, not a failure).
    """
    value = "True" if status else "False"
    out = [dict(c) for c in conditions]
    at = next((i for i, c in enumerate(conditions) if c.get("type") == type_), len(out))
    old = conditions[at] if at < len(conditions) else None
    entry: Obj = {
        "type": type_,
        "status": value,
        "lastTransitionTime": old["lastTransitionTime"]
        if old and old.get("status") == value and old.get("lastTransitionTime")
        else now(),
    }
    if not status:
        entry["severity"] = severity or ("Error" if reason else "Info")
    if reason:
        entry["reason"] = reason
    if message:
        entry["message"] = message
    out[at : at + 1] = [entry]
    return [c for i, c in enumerate(out) if i == at or c.get("type") != type_]


def resource_for(api_version: str, kind: str) -> ResourceType:
    known = for_kind(api_version, kind)
    if known is not None:
        return known
    group, _, version = api_version.rpartition("/")
    lower = kind.lower()
    plural = lower + ("es" if lower.endswith(("s", "x", "ch")) else "s")
    if lower.endswith("y") and not lower.endswith(("ay", "ey", "oy")):
        plural = lower[:-1] + "ies"
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "Node", "PersistentVolume"}
    return ResourceType(group, version, plural, kind, namespaced=kind not in cluster_scoped)


async def apply_objects(client: KubeClient, text: str, namespace: str | None) -> int:
    """Server-side apply every document of a multi-document YAML (into `namespace` if namespaced)."""
    count = 0
    for doc in yaml.safe_load_all(text or ""):
        if not doc:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise ValueError("every object needs apiVersion and kind")
        rt = resource_for(str(doc["apiVersion"]), str(doc["kind"]))
        meta = doc.setdefault("metadata", {})
        ns = (meta.get("namespace") or namespace) if rt.namespaced else None
        if ns:
            meta["namespace"] = ns
        await client.patch(
            rt, meta["name"], doc, ns, patch_type="apply", field_manager=FIELD_MANAGER, force=True
        )
        count += 1
    return count


async def read_kubeconfig(client: KubeClient, name: str, namespace: str) -> str | None:
    """The virtual cluster's kubeconfig from Secret vc-<name> (written by its syncer), if present."""
    try:
        secret = await client.get(SECRETS, kubeconfig_secret(name), namespace)
    except ApiError as err:
        if err.not_found:
            return None
        raise
    data = (secret.get("data") or {}).get("config")
    return base64.b64decode(data).decode() if data else None


_RANGE = re.compile(r"valid IPs is ([0-9a-fA-F.:]+/\d+)")


async def detect_service_cidr(client: KubeClient, fallback: str = "10.96.0.0/12") -> str:
    """The host's Service CIDR: the ServiceCIDR object (>= 1.33), else the error of an impossible IP."""
    try:
        cidr = await client.request("GET", "/apis/networking.k8s.io/v1/servicecidrs/kubernetes")
        cidrs = (cidr.get("spec") or {}).get("cidrs") or []
        if cidrs:
            return str(ipaddress.ip_network(cidrs[0]))
    except ApiError:
        pass
    probe = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "vcluster-py-cidr-probe", "namespace": "default"},
        "spec": {"clusterIP": "1.1.1.1", "ports": [{"port": 80}]},
    }
    try:
        await client.create(SERVICES, probe, "default", dry_run=True)
    except ApiError as err:
        m = _RANGE.search(str(err))
        if m:
            return m.group(1)
    return fallback


def imported_instance(project: str, source: dict[str, Any]) -> Obj:
    """The VirtualClusterInstance that adopts an existing virtual cluster (ProjectImportVirtualCluster).

    It points at the existing release with clusterRef and is marked imported: the controller observes it
    (ready once its kubeconfig Secret exists) and never installs or uninstalls it.
    """
    from .resources import ANNOTATION_IMPORTED, API_VERSION, project_namespace

    name = str(source.get("name") or "")
    namespace = str(source.get("namespace") or "")
    if not name or not namespace:
        raise ValueError("sourceVirtualCluster.name and sourceVirtualCluster.namespace are required")
    spec: Obj = {
        "clusterRef": {
            "cluster": str(source.get("cluster") or "local"),
            "namespace": namespace,
            "virtualCluster": name,
        }
    }
    if source.get("owner"):
        spec["owner"] = source["owner"]
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualClusterInstance",
        "metadata": {
            "name": str(source.get("importName") or name),
            "namespace": project_namespace(project),
            "annotations": {ANNOTATION_IMPORTED: "true"},
        },
        "spec": spec,
    }
