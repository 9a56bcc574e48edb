"""Events on virtual objects: how the syncer talks to the tenant.

A refused pod, a name collision with a foreign host object, a pod waiting for DNS: the tenant never
sees the syncer's log, so each of these becomes an Event on the virtual object (`kubectl describe`
shows it). Repeats of the same (object, reason, message) bump `count` instead of piling up objects,
like the kubelet's event correlator does.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from typing import Any

from .kube.client import ApiError, KubeClient
from .kube.resources import EVENTS

log = logging.getLogger(__name__)

COMPONENT = "vcluster-syncer"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
        await self.record(obj, "Warning", reason, message)

    async def normal(self, obj: dict[str, Any], reason: str, message: str) -> None:
        await self.record(obj, "Normal", reason, message)

    async def record(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Best effort: failing to record an event must never fail a reconcile."""
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        digest = hashlib.sha256(f"{meta.get('uid')}/{reason}/{message}".encode()).hexdigest()[:12]
        name = f"{meta.get('name')}.{digest}"
        now = _now()
        try:
            await self.client.create(
                EVENTS,
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": {
                        "apiVersion": obj.get("apiVersion", "v1"),
                        "kind": obj.get("kind", ""),
                        "name": meta.get("name"),
                        "namespace": meta.get("namespace"),
                        "uid": meta.get("uid"),
                        "resourceVersion": meta.get("resourceVersion"),
                    },
                    "reason": reason,
                    "message": message,
                    "type": event_type,
                    "count": 1,
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "source": {"component": COMPONENT},
                    "reportingComponent": COMPONENT,
                },
                namespace,
            )
        except ApiError as err:
            if not err.already_exists:
                log.warning("could not record event", extra={"reason": reason, "err": str(err)})
                return
            try:
                current = await self.client.get(EVENTS, name, namespace)
                await self.client.patch(
                    EVENTS,
                    name,
                    {"count": int(current.get("count") or 1) + 1, "lastTimestamp": now},
                    namespace,
                )
            except ApiError as again:
                log.warning("could not update event", extra={"reason": reason, "err": str(again)})
        log.info(
            "event",
            extra={
                "type": event_type,
                "reason": reason,
                "object": f"{namespace}/{meta.get('name')}",
                "msg_": message,
            },
        )
