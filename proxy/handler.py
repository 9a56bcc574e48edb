"""One request through the front door: canonical path → route → caller → the handler of that route.

The order is the security argument. The path is canonicalized and classified before anything else
(no decision is ever made on a form of the path the upstream would read differently); the caller is
authenticated before any route runs; each route then authorizes in its own terms (the virtual API
server for pass-through, a SubjectAccessReview for everything served elsewhere); and only our own
`Impersonate-*` headers reach an upstream.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from syncer.kube.client import ApiError, KubeClient, KubeError, TransportError
from syncer.options import SyncerOptions

from . import metrics, passthrough, upgrade
from .auth import AuthenticationError, Authenticator, UserInfo
from .headers import is_upgrade, upstream_headers
from .nodeproxy import NodeProxy
from .paths import CanonicalPath, PathError, canonicalize
from .redirect import PodStreams
from .routes import Route, RouteKind, classify
from .services import ServiceCreate
from .status import status_response
from .upstream import Upstream

__all__ = ["Proxy", "is_watch"]

log = logging.getLogger(__name__)

_TRUE = frozenset({"true", "1"})


def is_watch(path: CanonicalPath) -> bool:
    """A watch request: `watch=true` (or 1), or the legacy `/watch/` path segment."""
    s = path.segments
    if (len(s) > 2 and s[0] == "api" and s[2] == "watch") or (
        len(s) > 3 and s[0] == "apis" and s[3] == "watch"
    ):
        return True
    value = path.param("watch")
    return value is not None and value.lower() in _TRUE


def _peercert(request: web.BaseRequest) -> Any:
    transport = request.transport
    return transport.get_extra_info("peercert") if transport is not None else None


class Proxy:
    """Holds the upstreams and route handlers; `handle` is the aiohttp low-level request handler."""

    def __init__(
        self,
        options: SyncerOptions,
        virtual: KubeClient,
        host: KubeClient,
        *,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.options = options
        self.virtual = virtual
        self.virtual_upstream = Upstream(virtual)
        self.host_upstream = Upstream(host)
        self.authenticator = authenticator or Authenticator(virtual)
        self.pods = PodStreams(options, virtual, host, self.host_upstream)
        self.nodes = NodeProxy(options, virtual, self.pods)
        self.services = ServiceCreate(options, virtual, host, self.virtual_upstream)

    async def close(self) -> None:
        await self.virtual_upstream.close()
        await self.host_upstream.close()

    def virtual_headers(self, request: web.BaseRequest, user: UserInfo, *, upgrade: bool) -> CIMultiDict[str]:
        """Client headers minus identity and hop-by-hop ones, plus our credentials and the caller's
        identity as impersonation."""
        headers = upstream_headers(request.headers.items(), upgrade=upgrade, remote=request.remote)
        headers.update(self.virtual_upstream.auth_headers())
        headers.extend(user.impersonation)
        return headers

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        upgrading = is_upgrade(request.headers)
        verb = metrics.verb_class(request.method, upgrade=upgrading, watch=False)
        route_label = "refused"
        status: int | None = None
        metrics.IN_FLIGHT.inc()
        try:
            try:
                path = canonicalize(request.raw_path)
                route = classify(request.method, path)
            except PathError as exc:
                response: web.StreamResponse = status_response(exc.status, exc.message)
            else:
                verb = metrics.verb_class(request.method, upgrade=upgrading, watch=is_watch(path))
                route_label = route.kind.label
                response = await self._serve(request, route, path, upgrading)
            status = response.status
            return response
        finally:
            metrics.IN_FLIGHT.dec()
            metrics.REQUESTS.labels(verb, route_label, metrics.code_class(status)).inc()
            metrics.REQUEST_DURATION.labels(verb, route_label).observe(time.perf_counter() - started)

    async def _serve(
        self, request: web.BaseRequest, route: Route, path: CanonicalPath, upgrading: bool
    ) -> web.StreamResponse:
        if len(request.headers.getall("Authorization", ())) > 1:
            return status_response(401, "Unauthorized")
        try:
            user = await self.authenticator.authenticate(
                _peercert(request), request.headers.get("Authorization")
            )
        except AuthenticationError as exc:
            return status_response(exc.status, exc.message)
        try:
            return await self._dispatch(request, route, path, user, upgrading)
        except ApiError as exc:
            # Not relayed: a host API server's message would name host objects and identities.
            log.warning(
                "API error while serving a request", extra={"route": route.kind.label, "err": str(exc)}
            )
            return status_response(500, "internal error: the proxy could not complete the request")
        except upgrade.UpgradeError as exc:
            log.warning("Upgrade failed", extra={"route": route.kind.label, "err": str(exc)})
            return status_response(502, str(exc), close=True)
        except (TransportError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("Upstream unavailable", extra={"route": route.kind.label, "err": repr(exc)})
            return status_response(503, "an API server behind the proxy is not reachable")
        except KubeError as exc:
            log.warning("Error while serving a request", extra={"route": route.kind.label, "err": str(exc)})
            return status_response(500, "internal error: the proxy could not complete the request")

    async def _dispatch(
        self, request: web.BaseRequest, route: Route, path: CanonicalPath, user: UserInfo, upgrading: bool
    ) -> web.StreamResponse:
        if route.kind is RouteKind.POD_STREAM:
            return await self.pods.handle(request, route, path, user)
        if route.kind is RouteKind.NODE_PROXY:
            return await self.nodes.handle(request, route, path, user)
        headers = self.virtual_headers(request, user, upgrade=upgrading)
        if route.kind is RouteKind.SERVICE_CREATE and self.services.host_first(
            path, request.headers.get("Content-Type", "")
        ):
            return await self.services.handle(request, route, path, user, list(headers.items()))
        if upgrading:
            return await upgrade.relay(
                request,
                self.virtual_upstream.target,
                method=request.method,
                path_qs=self.virtual_upstream.path(path.path_qs),
                headers=headers.items(),
            )
        follow = path.param("follow")
        streaming = is_watch(path) or (follow is not None and follow.lower() in _TRUE)
        return await passthrough.forward(
            request, self.virtual_upstream, path_qs=path.path_qs, headers=headers, stream=streaming
        )
