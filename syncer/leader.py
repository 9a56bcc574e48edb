"""Leader election on a coordination.k8s.io Lease in the host namespace.

Only one syncer may write at a time (two would fight over every object); a standby takes over when
the leader stops renewing. Like client-go, expiry is judged by when WE last saw the lease record
change, on our monotonic clock — never by comparing the leader's `renewTime` with our wall clock,
so clock skew between pods cannot make two leaders.

A leader that cannot renew within `renew_deadline` gives up leadership; the caller stops its
controllers (the process exits and restarts, which is what controller-runtime does too).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge

from .kube.client import ApiError, KubeClient
from .kube.resources import LEASES

log = logging.getLogger(__name__)

IS_LEADER = Gauge("vcluster_syncer_leader", "1 while this syncer holds the leader lease")


def _micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElector:
    client: KubeClient
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        self._observed_record: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.is_leader = asyncio.Event()

    def _lease(self, spec: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    def _spec(self, current: dict[str, Any] | None, now: str) -> dict[str, Any]:
        spec = dict((current or {}).get("spec") or {})
        taking_over = spec.get("holderIdentity") != self.identity
        spec.update(
            {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "renewTime": now,
            }
        )
        if taking_over:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if current else 0)
        return spec

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the lease afterwards."""
        now = _micro_time()
        try:
            current = await self.client.get(LEASES, self.name, self.namespace)
        except ApiError as err:
            if not err.not_found:
                raise
            try:
                await self.client.create(LEASES, self._lease(self._spec(None, now)), self.namespace)
            except ApiError as create_err:
                if create_err.already_exists:
                    return False
                raise
            return True
        spec = current.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed_record:
            self._observed_record = record
            self._observed_at = time.monotonic()
        holder = spec.get("holderIdentity")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        expired = time.monotonic() > self._observed_at + duration
        if holder and holder != self.identity and not expired:
            return False
        try:
            await self.client.replace(
                LEASES, self._lease(self._spec(current, now), current["metadata"]["resourceVersion"])
            )
        except ApiError as err:
            if err.conflict:
                return False
            raise
        return True

    async def run(self) -> None:
        """Acquire, then renew until renewal fails for `renew_deadline`; then return (leadership lost)."""
        while True:
            try:
                if await self.try_acquire_or_renew():
                    break
            except (ApiError, OSError) as err:
                log.warning("leader election attempt failed", extra={"err": str(err)})
            await asyncio.sleep(self.retry_period)
        log.info("became leader", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity})
        self.is_leader.set()
        IS_LEADER.set(1)
        last_renew = time.monotonic()
        try:
            while True:
                await asyncio.sleep(self.retry_period)
                try:
                    if await self.try_acquire_or_renew():
                        last_renew = time.monotonic()
                        continue
                except (ApiError, OSError) as err:
                    log.warning("lease renewal failed", extra={"err": str(err)})
                if time.monotonic() - last_renew > self.renew_deadline:
                    log.error("lost leadership", extra={"lease": f"{self.namespace}/{self.name}"})
                    return
        finally:
            self.is_leader.clear()
            IS_LEADER.set(0)

    async def release(self) -> None:
        """On clean shutdown, hand the lease over at once instead of making the standby wait."""
        if not self.is_leader.is_set():
            return
        try:
            current = await self.client.get(LEASES, self.name, self.namespace)
            spec = dict(current.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec["holderIdentity"] = ""
            spec["leaseDurationSeconds"] = 1
            await self.client.replace(LEASES, self._lease(spec, current["metadata"]["resourceVersion"]))
        except (ApiError, OSError) as err:
            log.warning("could not release the lease", extra={"err": str(err)})
