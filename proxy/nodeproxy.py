"""`nodes/<n>/proxy/*`: the kubelet API of a virtual node, answered by us from an allowlist.

Virtual nodes are stand-ins for host nodes that many tenants share. Relaying the kubelet API with the
syncer's credentials (what vcluster <= 0.5 did) hands every tenant the other tenants' pods, logs and
exec. So nothing is relayed blindly; only these sub-paths are served, and only with this tenant's data:

* `healthz`: "ok" (the node object exists; that is all a health check of a fake kubelet can mean);
* `pods`: the PodList of this tenant's pods bound to that node, with their virtual names;
* `stats/summary`, `metrics`: built from the same pods (pod references with virtual names, running
  pod/container counts). The host kubelet's own figures are not reachable: the syncer's Role has no
  `nodes/proxy` (it is cluster-scoped), and nodes are shared, so we report what we know;
* `containerLogs/<ns>/<pod>/<container>`: only for a virtual pod of this tenant bound to this node
  and a container of its spec; served as `pods/log` of its host pod (the ownership rules of
  `redirect.py` apply), with the kubelet's query options carried over;
* everything else — `exec`, `run`, `attach`, `portForward`, `runningpods`, `configz`, `logs`,
  `debug`, `checkpoint`, `metrics/cadvisor` — is 403, as is every method but GET/HEAD.

The caller must be allowed `nodes/proxy` (verb from the HTTP method) in the virtual cluster, as the
API server would require, and the node must exist there.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from syncer.kube.client import ApiError, JsonObj, KubeClient
from syncer.kube.resources import NODES, PODS
from syncer.options import SyncerOptions

from .auth import UserInfo, authorize
from .paths import CanonicalPath
from .redirect import PodNotReachable, PodStreams
from .routes import Route
from .status import forbidden, status_response

__all__ = ["ALLOWED", "NodeProxy", "allowed_subpath", "node_name"]

ALLOWED = ("healthz", "pods", "stats/summary", "metrics", "containerLogs/<namespace>/<pod>/<container>")

# kubelet containerLogs options, same names as pods/log options.
_LOG_OPTIONS = ("follow", "previous", "sinceSeconds", "sinceTime", "timestamps", "tailLines", "limitBytes")
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def node_name(raw: str) -> str | None:
    """The node of a node-proxy path segment: `name`, `name:port` or `scheme:name:port`; None if invalid."""
    parts = raw.split(":")
    if len(parts) == 3:
        scheme, name, _port = parts
        if scheme not in ("http", "https"):
            return None
    elif len(parts) in (1, 2):
        name = parts[0]
    else:
        return None
    if len(parts) > 1 and not parts[-1].isdigit():
        return None
    return name if len(name) <= 253 and _NODE_NAME.fullmatch(name) else None


def allowed_subpath(rest: tuple[str, ...]) -> str | None:
    """Which allowlisted endpoint `rest` (the segments after `proxy`) is, or None."""
    joined = "/".join(rest)
    if joined in ("healthz", "pods", "stats/summary", "metrics"):
        return joined
    if len(rest) == 4 and rest[0] == "containerLogs":
        return "containerLogs"
    return None


def _container_names(pod: JsonObj) -> set[str]:
    spec = pod.get("spec") or {}
    return {
        str(c.get("name"))
        for key in ("containers", "initContainers", "ephemeralContainers")
        for c in spec.get(key) or []
    }


def stats_summary(node: str, node_obj: JsonObj, pods: list[JsonObj]) -> JsonObj:
    """A kubelet Summary (stats/v1alpha1) with this tenant's pods on `node`; usage figures unknown."""
    out: list[JsonObj] = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        started = {
            cs.get("name"): ((cs.get("state") or {}).get("running") or {}).get("startedAt")
            for cs in status.get("containerStatuses") or []
        }
        containers = [
            {"name": c.get("name"), "startTime": started.get(c.get("name")) or status.get("startTime")}
            for c in (pod.get("spec") or {}).get("containers") or []
        ]
        out.append(
            {
                "podRef": {
                    "name": meta.get("name"),
                    "namespace": meta.get("namespace"),
                    "uid": meta.get("uid"),
                },
                "startTime": status.get("startTime"),
                "containers": containers,
            }
        )
    return {
        "node": {
            "nodeName": node,
            "systemContainers": [],
            "startTime": (node_obj.get("metadata") or {}).get("creationTimestamp"),
        },
        "pods": out,
    }


def metrics_text(pods: list[JsonObj]) -> str:
    """Kubelet metrics we can state truthfully for this tenant: running pods and containers."""
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    containers = sum(
        1
        for p in running
        for cs in (p.get("status") or {}).get("containerStatuses") or []
        if (cs.get("state") or {}).get("running") is not None
    )
    return (
        "# HELP kubelet_running_pods Number of pods that have a running pod sandbox\n"
        "# TYPE kubelet_running_pods gauge\n"
        f"kubelet_running_pods {len(running)}\n"
        "# HELP kubelet_running_containers Number of containers currently running\n"
        "# TYPE kubelet_running_containers gauge\n"
        f'kubelet_running_containers{{container_state="running"}} {containers}\n'
    )


_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


class NodeProxy:
    def __init__(self, options: SyncerOptions, virtual: KubeClient, pods: PodStreams) -> None:
        self.options = options
        self.virtual = virtual
        self.pods = pods

    async def handle(
        self, request: web.BaseRequest, route: Route, path: CanonicalPath, user: UserInfo
    ) -> web.StreamResponse:
        node = node_name(route.name)
        endpoint = allowed_subpath(route.rest)
        if node is None or endpoint is None or request.method not in ("GET", "HEAD"):
            return status_response(
                403, f"node proxy path is not allowed; allowed: {', '.join(ALLOWED)} (GET only)"
            )
        verb = _VERBS[request.method]
        decision = await authorize(
            self.virtual, user, verb=verb, resource="nodes", subresource="proxy", name=node
        )
        if not decision.allowed:
            return forbidden(user.name, verb, "nodes", "proxy", "", node)
        try:
            node_obj = await self.virtual.get(NODES, node)
        except ApiError as exc:
            if exc.not_found:
                return status_response(
                    404, f'nodes "{node}" not found', details={"name": node, "kind": "nodes"}
                )
            raise
        if endpoint == "healthz":
            return web.Response(text="ok")
        if endpoint == "containerLogs":
            return await self._container_logs(request, node, route.rest[1:], path)
        pods = await self._pods_on(node)
        if endpoint == "pods":
            body: Any = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods}
            return web.json_response(body, dumps=json.dumps)
        if endpoint == "stats/summary":
            return web.json_response(stats_summary(node, node_obj, pods), dumps=json.dumps)
        return web.Response(text=metrics_text(pods), content_type="text/plain", charset="utf-8")

    async def _pods_on(self, node: str) -> list[JsonObj]:
        listed = await self.virtual.list(PODS, field_selector=f"spec.nodeName={node}")
        return list(listed.get("items") or [])

    async def _container_logs(
        self, request: web.BaseRequest, node: str, where: tuple[str, ...], path: CanonicalPath
    ) -> web.StreamResponse:
        namespace, name, container = where
        try:
            vpod = await self.virtual.get(PODS, name, namespace)
        except ApiError as exc:
            if exc.not_found:
                return status_response(
                    404, f'pods "{name}" not found', details={"name": name, "kind": "pods"}
                )
            raise
        if (vpod.get("spec") or {}).get("nodeName") != node or container not in _container_names(vpod):
            return status_response(
                404, f"container {container} of pod {namespace}/{name} is not on node {node}"
            )
        try:
            pod = await self.pods.resolve(namespace, name)
        except PodNotReachable as exc:
            return exc.response
        params = path.params()
        query = [("container", container)] + [(k, params[k][0]) for k in _LOG_OPTIONS if k in params]
        target = CanonicalPath(
            ("api", "v1", "namespaces", pod.host_namespace, "pods", pod.host_name, "log"),
            query=urlencode(query),
        )
        return await self.pods.send(request, target, pod, namespace=namespace, name=name)
