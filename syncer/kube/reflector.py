"""A reflector keeps a `Store` equal to the API server's view of one resource type: list, then watch.

The protocol (client-go's reflector, kopf's watching loop) and the failures it survives:

1. LIST (paginated) and `Store.replace()` the result. The deltas go to `on_change`, so after a relist
   handlers learn about everything that changed while we were blind, deletions included.
2. WATCH from the *list's* resourceVersion (never from the newest item's: items are unordered), with
   bookmarks. Every event moves our resourceVersion forward, BOOKMARKs included: they exist so that a
   watch on a quiet selector still has a recent point to resume from.
3. The server ends each watch after `timeoutSeconds` (randomised so many reflectors do not reconnect in
   step): re-watch from the last resourceVersion, no relist.
4. Nothing at all received for `inactivity_timeout` (longer than the server's bookmark period, about a
   minute): the connection is presumed half-open (NAT, LB, a dead peer) and is re-opened.
5. 410 Gone — as the HTTP status or as an ERROR event with code 410 in a 200 stream — means our
   resourceVersion is older than the server's history: relist (a consistent read) and go on from 1.
6. Connection errors and other error answers: retry the failed step after a capped exponential
   back-off with jitter; a successful watch event resets the back-off.

`run()` never returns; cancel it to stop. Cancellation is safe at any await: the watch stream is
closed by `aclosing`, and the store is only ever mutated synchronously between awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, Protocol

from syncer.kube import metrics
from syncer.kube.client import ApiError, JsonObj, KubeClient, KubeError
from syncer.kube.resources import ResourceType

__all__ = ["Backoff", "OnChange", "Reflector", "ReflectorStore"]

log = logging.getLogger(__name__)

OnChange = Callable[[JsonObj | None, JsonObj | None], None]
"""Called with (old, new): (None, obj) added, (old, obj) changed, (old, None) deleted. Synchronous on
purpose: it should only enqueue keys, and must not block the reflector."""


def _slim(obj: JsonObj) -> None:
    """Drop `metadata.managedFields` before caching: no reader uses it, and it is often the largest
    part of an object (the benchmark's memory per synced pod roughly halved without it)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)


class ReflectorStore(Protocol):
    """What a reflector needs from its store; `syncer.cache.store.Store` is the implementation.

    A protocol rather than an import because layers point one way: the cache builds on kube I/O, so
    kube must not import the cache.
    """

    def upsert(self, obj: JsonObj, /) -> JsonObj | None: ...

    def delete(self, obj_or_key: JsonObj | str, /) -> JsonObj | None: ...

    def replace(self, objs: Iterable[JsonObj], /) -> list[tuple[JsonObj | None, JsonObj | None]]: ...


class Backoff:
    """Capped exponential delays with "equal jitter" (half fixed, half random)."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0) -> None:
        self.initial = initial
        self.cap = cap
        self._attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.initial * 2.0**self._attempt)
        self._attempt += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self._attempt = 0


class _Gone(Exception):
    """Our resourceVersion is too old for the server: relist."""


class _Inactive(Exception):
    """No event within the inactivity timeout."""


def _rv(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv else None


class Reflector:
    """Mirrors one (resource type, namespace, selectors) into `store` and reports changes.

    `synced` is set once the first list is in the store (readiness: controllers should not act on a
    half-filled cache). `resource_version` is where the next watch resumes. `name` labels logs.
    `watch_timeout` is the server-side `timeoutSeconds` of each watch; by default a random value in
    [300, 600) per watch, like client-go. `page_size` bounds each list page.
    """

    def __init__(
        self,
        client: KubeClient,
        rt: ResourceType,
        store: ReflectorStore,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_change: OnChange | None = None,
        inactivity_timeout: float = 70.0,
        watch_timeout: int | None = None,
        page_size: int = 500,
        backoff: Backoff | None = None,
        name: str | None = None,
    ) -> None:
        self.client = client
        self.rt = rt
        self.store = store
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.on_change = on_change
        self.inactivity_timeout = inactivity_timeout
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.name = name or (f"{client.name}/{rt.resource}" + (f"/{namespace}" if namespace else ""))
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._backoff = backoff or Backoff()
        self._relists = metrics.REFLECTOR_RELISTS.labels(client.name, rt.resource)
        self._log_extra = {"reflector": self.name, "cluster": client.name, "resource": rt.resource}

    def _restarted(self, reason: str) -> None:
        metrics.REFLECTOR_WATCH_RESTARTS.labels(self.client.name, self.rt.resource, reason).inc()

    async def run(self) -> NoReturn:
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch()
                self._restarted("expired")
            except _Gone:
                self._restarted("gone")
                log.info("Resource version too old, relisting", extra=self._log_extra)
                need_list = True
            except _Inactive:
                self._restarted("inactivity")
                log.info("Watch silent for too long, reconnecting", extra=self._log_extra)
            except KubeError as exc:
                delay = self._backoff.next()
                if isinstance(exc, ApiError) and exc.retry_after_seconds is not None:
                    delay = max(delay, min(exc.retry_after_seconds, self._backoff.cap))
                if not need_list:
                    self._restarted("error")
                log.warning(
                    "Watch failed, retrying" if not need_list else "List failed, retrying",
                    extra={**self._log_extra, "err": str(exc), "delay": round(delay, 3)},
                )
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        try:
            listing = await self.client.list(
                self.rt,
                self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                limit=self.page_size,
            )
        except ApiError as exc:
            if exc.gone:  # only from a paginated list whose fallback also expired: just list again
                raise KubeError(str(exc)) from exc
            raise
        self._relists.inc()
        for item in listing["items"]:
            _slim(item)
        for old, new in self.store.replace(listing["items"]):
            self._emit(old, new)
        self.resource_version = str(listing["metadata"]["resourceVersion"])
        self.synced.set()
        log.debug(
            "Listed",
            extra={
                **self._log_extra,
                "items": len(listing["items"]),
                "resourceVersion": self.resource_version,
            },
        )

    async def _watch(self) -> None:
        """One watch, from `resource_version` until the server ends it; raises on anything else."""
        timeout_seconds = self.watch_timeout if self.watch_timeout is not None else random.randint(300, 599)
        events = self.client.watch(
            self.rt,
            self.namespace,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=timeout_seconds,
            allow_bookmarks=True,
        )
        try:
            async with contextlib.aclosing(events):
                while True:
                    try:
                        async with asyncio.timeout(self.inactivity_timeout):
                            event = await anext(events)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        raise _Inactive() from None
                    self._handle(event)
        except ApiError as exc:
            if exc.gone:
                raise _Gone() from exc
            raise

    def _handle(self, event: JsonObj) -> None:
        kind = str(event.get("type"))
        obj = event.get("object")
        metrics.REFLECTOR_EVENTS.labels(self.client.name, self.rt.resource, kind).inc()
        if kind == "ERROR":
            error = ApiError.from_status(obj if isinstance(obj, dict) else {})
            if error.gone:
                raise _Gone()
            raise error
        rv = _rv(obj)
        if not isinstance(obj, dict) or rv is None:
            log.warning("Ignored malformed watch event", extra={**self._log_extra, "type": kind})
            return
        self._backoff.reset()
        self.resource_version = rv
        if kind in ("ADDED", "MODIFIED"):
            _slim(obj)
            old = self.store.upsert(obj)
            if old is None or _rv(old) != rv:
                self._emit(old, obj)
        elif kind == "DELETED":
            old = self.store.delete(obj)
            if old is not None:
                self._emit(old, None)
        # BOOKMARK: only the resourceVersion matters, and it is recorded above.

    def _emit(self, old: JsonObj | None, new: JsonObj | None) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(old, new)
        except Exception:
            # A handler bug must not stop the cache from following the server; it is loud in the logs.
            log.exception("on_change raised", extra=self._log_extra)
