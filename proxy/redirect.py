"""`pods/<p>/{exec,attach,portforward,log}`: served by the host, where the pod actually runs.

The virtual cluster has no kubelets; the host pod `<p>-x-<ns>-x-<vc>` in the host namespace is the
real one. These requests therefore do not go to the virtual API server, and the virtual API server's
authorization never sees them — so the proxy enforces, in this order:

1. **RBAC of the virtual cluster**, by a SubjectAccessReview for the caller: verb `create` for exec,
   attach and portforward whatever the HTTP method (WebSocket clients use GET; Kubernetes >= 1.31 makes
   the same synthetic `create` check, KEP-4006, so a `get`-only Role cannot exec over WebSocket), and
   `get` for log;
2. **the virtual pod exists** (checked after authorization, so a denied caller learns nothing about
   which pods exist);
3. **the host pod is provably its copy**: our marker label and object-* annotations naming this very
   virtual pod, and the virtual uid (`syncer.translate.metadata.ownership`). A host pod that merely
   sits at the translated name — unmanaged, another virtual cluster's, the copy of an ambiguous
   `-x-` twin or of a deleted incarnation — is never reached;
4. only then is the path rewritten to the host namespace and name, the caller's credentials and
   identity headers removed, and the request sent to the host API server with the syncer's
   ServiceAccount token (its Role allows exactly these subresources). Upgrades are spliced by
   `upgrade.relay`; logs stream through `passthrough.forward` (so `follow` works).

Host error messages mention host names ("container x is not valid for pod web-x-ns-x-vc1"); they are
rewritten to virtual names before they reach the tenant.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from multidict import CIMultiDict

from syncer.kube.client import ApiError, JsonObj, KubeClient
from syncer.kube.resources import PODS
from syncer.options import SyncerOptions
from syncer.translate.metadata import Ownership, ownership
from syncer.translate.names import host_name, redact_host_names

from . import passthrough, upgrade
from .auth import UserInfo, authorize
from .headers import is_upgrade, upstream_headers
from .paths import CanonicalPath
from .routes import Route
from .status import forbidden, status_response
from .upstream import Upstream

__all__ = ["HostPod", "PodStreams"]

log = logging.getLogger(__name__)

_MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True)
class HostPod:
    """A virtual pod and the host pod proven to be its copy."""

    virtual: JsonObj
    host_name: str
    host_namespace: str

    def redact(self, text: str, *, namespace: str, name: str, vcluster: str) -> str:
        return redact_host_names(
            text,
            {self.host_name: name, f"{self.host_namespace}/{self.host_name}": f"{namespace}/{name}"},
            vcluster=vcluster,
        )


def host_safe_query(query: str) -> str:
    """The query without `insecureSkipTLSVerifyBackend`: a tenant must not be able to make the host API
    server skip TLS verification of the host's kubelet, whatever its rights in the virtual cluster."""
    kept = [
        (k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "insecureSkipTLSVerifyBackend"
    ]
    return urlencode(kept)


class PodNotReachable(Exception):
    """The virtual pod has no host pod we may use; `response` says why, in the tenant's terms."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


class PodStreams:
    def __init__(
        self, options: SyncerOptions, virtual: KubeClient, host: KubeClient, host_upstream: Upstream
    ):
        self.options = options
        self.virtual = virtual
        self.host = host
        self.host_upstream = host_upstream

    async def resolve(self, namespace: str, name: str) -> HostPod:
        """The host copy of virtual pod `namespace/name`, or `PodNotReachable`."""
        try:
            vpod = await self.virtual.get(PODS, name, namespace)
        except ApiError as exc:
            if exc.not_found:
                raise PodNotReachable(
                    status_response(404, f'pods "{name}" not found', details={"name": name, "kind": "pods"})
                ) from exc
            raise
        hname = host_name(name, namespace, self.options.name)
        hns = self.options.target_namespace
        try:
            hpod = await self.host.get(PODS, hname, hns)
        except ApiError as exc:
            if exc.not_found:
                raise PodNotReachable(
                    status_response(
                        404,
                        f'pods "{name}" is not running yet: it has no host pod',
                        details={"name": name, "kind": "pods"},
                    )
                ) from exc
            raise
        owned = ownership(
            hpod,
            vcluster=self.options.name,
            virtual_namespace=namespace,
            virtual_name=name,
            kind="Pod",
            virtual_uid=str(vpod.get("metadata", {}).get("uid", "")),
        )
        if owned is not Ownership.OURS:
            log.warning(
                "Refusing to reach a host pod that is not the copy of the virtual pod",
                extra={"pod": f"{namespace}/{name}", "hostPod": hname, "ownership": owned.value},
            )
            raise PodNotReachable(
                status_response(
                    403,
                    f'pods "{name}" is forbidden: its host pod is not managed by this virtual cluster',
                    details={"name": name, "kind": "pods"},
                )
            )
        return HostPod(vpod, hname, hns)

    def host_headers(self, request: web.BaseRequest, *, upgrade: bool) -> CIMultiDict[str]:
        headers = upstream_headers(request.headers.items(), upgrade=upgrade, remote=request.remote)
        headers.update(self.host_upstream.auth_headers())
        return headers

    async def handle(
        self, request: web.BaseRequest, route: Route, path: CanonicalPath, user: UserInfo
    ) -> web.StreamResponse:
        namespace, name, sub = route.namespace, route.name, route.subresource
        verb = "get" if sub == "log" else "create"
        decision = await authorize(
            self.virtual, user, verb=verb, resource="pods", subresource=sub, namespace=namespace, name=name
        )
        if not decision.allowed:
            return forbidden(user.name, verb, "pods", sub, namespace, name)
        try:
            pod = await self.resolve(namespace, name)
        except PodNotReachable as exc:
            return exc.response
        target = path.with_segments(
            ("api", "v1", "namespaces", pod.host_namespace, "pods", pod.host_name, sub)
        )
        if sub == "log" and "insecureSkipTLSVerifyBackend" in target.params():
            target = target.with_query(host_safe_query(target.query))
        return await self.send(request, target, pod, namespace=namespace, name=name)

    async def send(
        self, request: web.BaseRequest, target: CanonicalPath, pod: HostPod, *, namespace: str, name: str
    ) -> web.StreamResponse:
        """Send the (rewritten) request to the host API server with the syncer's credentials."""
        upgrading = is_upgrade(request.headers)
        headers = self.host_headers(request, upgrade=upgrading)
        log.debug("Redirecting to the host", extra={"pod": f"{namespace}/{name}", "hostPath": target.path})
        if upgrading:
            response = await upgrade.relay(
                request,
                self.host_upstream.target,
                method=request.method,
                path_qs=self.host_upstream.path(target.path_qs),
                headers=headers.items(),
            )
        else:
            response = await passthrough.forward(
                request,
                self.host_upstream,
                path_qs=target.path_qs,
                headers=headers,
                error_filter=lambda body: self._redact(body, pod, namespace=namespace, name=name),
            )
        if isinstance(response, web.Response) and response.status >= 400 and response.body is not None:
            body = response.body
            if isinstance(body, bytes) and len(body) <= _MAX_ERROR_BODY:
                response.body = self._redact(body, pod, namespace=namespace, name=name)
        return response

    def _redact(self, body: bytes, pod: HostPod, *, namespace: str, name: str) -> bytes:
        text = body.decode("utf-8", "replace")
        redacted = pod.redact(text, namespace=namespace, name=name, vcluster=self.options.name)
        if redacted == text:
            return body
        try:
            # Keep JSON valid when a name inside a string changed length: re-serialize the Status.
            return json.dumps(json.loads(redacted)).encode()
        except ValueError:
            return redacted.encode()
