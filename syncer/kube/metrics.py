"""Prometheus metrics of the kube I/O and cache layers, defined once in the default registry.

Why one module: metric objects must be created exactly once per process (a second registration of
the same name raises), and the exporter, the tests and the dashboards all need one place that lists
them. Every label is bounded: cluster names are the few clients we build ("host", "virtual"), verbs
and kinds come from fixed tables, queue and controller names are chosen in code. Object names and
namespaces are never labels (unbounded cardinality).

The work-queue metrics reuse the names controller-runtime exports (`workqueue_*`), so existing
dashboards for Go controllers work unchanged.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "KUBE_REQUESTS",
    "KUBE_REQUEST_DURATION",
    "REFLECTOR_EVENTS",
    "REFLECTOR_RELISTS",
    "REFLECTOR_WATCH_RESTARTS",
    "WORKQUEUE_ADDS",
    "WORKQUEUE_DEPTH",
    "WORKQUEUE_HANDLER_ERRORS",
    "WORKQUEUE_QUEUE_DURATION",
    "WORKQUEUE_RETRIES",
    "WORKQUEUE_WORK_DURATION",
    "WRITES",
]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

KUBE_REQUESTS = Counter(
    "vcluster_kube_requests",
    "HTTP requests sent to a Kubernetes API server, one per attempt (retries count again).",
    ["cluster", "verb", "code_class"],
)
"""`code_class` is `2xx`..`5xx`, or `error` when no HTTP answer came back (connection failure, timeout)."""

KUBE_REQUEST_DURATION = Histogram(
    "vcluster_kube_request_duration_seconds",
    "Time from sending a request to having its whole answer (watches: until the stream is open).",
    ["cluster", "verb"],
    buckets=_LATENCY_BUCKETS,
)

WRITES = Counter(
    "vcluster_writes",
    "Successful mutating calls (create/update/patch/delete), counted once per call, never per retry.",
    ["cluster", "kind", "verb"],
)
"""A no-op resync must leave this unchanged; `kind` is `Pod`, or `Pod/status`, `Pod/binding`... for
subresources. Dry runs and deletes of objects that were already gone are not writes."""

REFLECTOR_RELISTS = Counter(
    "vcluster_reflector_relists",
    "Full LISTs done by reflectors (the first one included).",
    ["cluster", "resource"],
)

REFLECTOR_WATCH_RESTARTS = Counter(
    "vcluster_reflector_watch_restarts",
    "Watches re-opened by reflectors, by why the previous one ended.",
    ["cluster", "resource", "reason"],
)
"""`reason`: `expired` (server-side timeout), `inactivity` (nothing received, bookmarks included, for
too long), `gone` (410: resourceVersion too old, a relist follows), `error` (connection or HTTP error)."""

REFLECTOR_EVENTS = Counter(
    "vcluster_reflector_events",
    "Watch events received by reflectors, by event type (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR).",
    ["cluster", "resource", "type"],
)

WORKQUEUE_DEPTH = Gauge("workqueue_depth", "Keys waiting in the queue (not being processed).", ["name"])
WORKQUEUE_ADDS = Counter("workqueue_adds", "Keys accepted into the queue (duplicates not counted).", ["name"])
WORKQUEUE_RETRIES = Counter("workqueue_retries", "Rate-limited re-adds (after a failed attempt).", ["name"])
WORKQUEUE_QUEUE_DURATION = Histogram(
    "workqueue_queue_duration_seconds",
    "Time a key waited in the queue before a worker took it.",
    ["name"],
    buckets=_LATENCY_BUCKETS,
)
WORKQUEUE_WORK_DURATION = Histogram(
    "workqueue_work_duration_seconds",
    "Time a worker spent handling one key.",
    ["name"],
    buckets=_LATENCY_BUCKETS,
)
WORKQUEUE_HANDLER_ERRORS = Counter(
    "workqueue_handler_errors",
    "Keys whose handler raised (each is re-queued with back-off).",
    ["name"],
)
