"""Which handler serves a request: a pure function of the method and the canonical path.

Four kinds of request are not plain pass-through to the virtual API server:

* `pods/<p>/{exec,attach,portforward,log}`: served by the host (the only place the pod runs);
* `nodes/<n>/proxy/...`: a kubelet API; only an allowlist is answered, by us;
* `POST namespaces/<ns>/services`: host service first, so both sides get the same ClusterIP;
* anything the router cannot read unambiguously: refused.

Kubernetes paths are case-sensitive, so `/API/v1/.../EXEC` would only ever be a 404 upstream. We still
refuse a path keyword spelled in another case instead of passing it through as "not a keyword": if any
component on the way ever folded case, the request would reach a handler we never authorized.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .paths import CanonicalPath, PathError

__all__ = ["POD_STREAM_SUBRESOURCES", "Route", "RouteKind", "classify"]

POD_STREAM_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "log"})

# Fixed words of the routes we treat specially; a differently-cased spelling is refused.
_KEYWORDS = frozenset({"api", "apis", "v1", "namespaces", "pods", "nodes", "services", "proxy", "watch"})
_KEYWORDS = _KEYWORDS | POD_STREAM_SUBRESOURCES
# The deepest fixed word we route on is the 7th segment: api/v1/namespaces/<ns>/pods/<p>/<sub>.
_CHECKED_DEPTH = 7


class RouteKind(enum.Enum):
    PASSTHROUGH = "passthrough"
    POD_STREAM = "pod-stream"
    NODE_PROXY = "node-proxy"
    SERVICE_CREATE = "service-create"

    @property
    def label(self) -> str:
        return self.value


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    rest: tuple[str, ...] = ()
    """Segments after `proxy` for node-proxy routes."""


PASSTHROUGH = Route(RouteKind.PASSTHROUGH)


def _check_case(segments: tuple[str, ...]) -> None:
    for segment in segments[:_CHECKED_DEPTH]:
        lowered = segment.lower()
        if lowered != segment and lowered in _KEYWORDS:
            raise PathError(403, f"path keyword {segment!r} must be lower case")


def classify(method: str, path: CanonicalPath) -> Route:
    """The route of a request. Raises `PathError` (403) for paths we refuse to interpret."""
    s = path.segments
    _check_case(s)
    if len(s) < 3 or s[0] != "api" or s[1] != "v1":
        return PASSTHROUGH
    if s[2] == "proxy":
        # The pre-1.10 `/api/v1/proxy/...` form: gone upstream, never interpreted here.
        raise PathError(403, "the legacy /api/v1/proxy paths are not served")
    if s[2] == "nodes" and len(s) >= 5 and s[4] == "proxy":
        return Route(RouteKind.NODE_PROXY, name=s[3], subresource="proxy", rest=s[5:])
    if s[2] != "namespaces" or len(s) < 5:
        return PASSTHROUGH
    namespace = s[3]
    if s[4] == "pods" and len(s) >= 7 and s[6] in POD_STREAM_SUBRESOURCES:
        if len(s) > 7:
            raise PathError(403, f"unexpected path below pods/{s[6]}")
        return Route(RouteKind.POD_STREAM, namespace=namespace, name=s[5], subresource=s[6])
    if s[4] == "services" and len(s) == 5 and method == "POST":
        return Route(RouteKind.SERVICE_CREATE, namespace=namespace)
    return PASSTHROUGH
