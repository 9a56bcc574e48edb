"""Prometheus metrics of the proxy, in the default registry (served on the syncer's /metrics).

Labels are bounded by construction — never a path, user, namespace or object name:

* `verb`: `read` (GET/HEAD/OPTIONS), `write` (POST/PUT/PATCH/DELETE), `watch` (`watch=` query or a
  `/watch/` path), `stream` (an HTTP upgrade: exec, attach, port-forward);
* `route`: `passthrough`, `pod-stream`, `node-proxy`, `service-create`, `refused` (refused before
  routing: bad path, failed authentication);
* `code`: `1xx`..`5xx`, or `error` when the handler failed without an answer.

The latency histogram measures the time to the end of the handler: for watches and streams that is
their whole lifetime, which is why `verb` separates them from the requests a latency SLO is about.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["CERT_ROTATIONS", "IN_FLIGHT", "REQUESTS", "REQUEST_DURATION", "code_class", "verb_class"]

REQUESTS = Counter(
    "vcluster_proxy_requests",
    "Requests served by the API proxy.",
    ["verb", "route", "code"],
)
REQUEST_DURATION = Histogram(
    "vcluster_proxy_request_duration_seconds",
    "Time from receiving a request to the end of its answer (whole lifetime for watches and streams).",
    ["verb", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0),
)
IN_FLIGHT = Gauge("vcluster_proxy_requests_in_flight", "Requests (including open streams) being served.")
CERT_ROTATIONS = Counter(
    "vcluster_proxy_serving_cert_rotations", "Serving certificates issued because the SAN set changed."
)

_WRITE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def verb_class(method: str, *, upgrade: bool, watch: bool) -> str:
    if upgrade:
        return "stream"
    if watch:
        return "watch"
    return "write" if method in _WRITE else "read"


def code_class(status: int | None) -> str:
    return f"{status // 100}xx" if status is not None and 100 <= status < 600 else "error"
