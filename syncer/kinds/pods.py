"""Pods: virtual spec → host pod; host status, node binding and deletion → virtual pod.

The decisions, per virtual key, looking at both sides:

| virtual            | host                 | action                                                        |
|--------------------|----------------------|---------------------------------------------------------------|
| absent             | ours                 | delete the host pod (the tenant deleted it)                    |
| terminating        | absent               | force-delete the virtual pod (nothing runs; finalize it)       |
| terminating        | running              | delete the host pod with the virtual pod's grace period        |
| present, never ran | absent               | security check → tokens → create the host pod                  |
| present, bound     | absent               | the host pod ran and is gone (evicted, deleted on the host):   |
|                    |                      | delete the virtual pod — never resurrect it                    |
| present            | terminating          | the host is deleting it: delete the virtual pod with its grace |
| present            | ours                 | bind to a fake node, status H→V, mutable spec V→H              |

Service-account tokens are minted by TokenRequest in the VIRTUAL cluster (bound to the virtual pod)
and stored in a host Secret owned by the host pod — never in an annotation, where anyone allowed to
read pods could copy them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import time
from collections.abc import Iterable
from typing import Any, ClassVar

from ..controller import SyncContext
from ..informers import Informer
from ..kube.client import ApiError
from ..kube.resources import NAMESPACES, PODS, SECRETS, SERVICE_ACCOUNTS, SERVICES, ResourceType
from ..translate import metadata, names, podsecurity
from ..translate import pods as pod_translate
from ..translate.metadata import Ownership
from .base import SYNC_ERROR, MirroredKind

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NAMESPACE_INDEX = "namespace"
TOKEN_OWNER_ANNOTATION = names.RESERVED_PREFIX + "token-for-pod"
# Unix time after which the tokens in the Secret are minted again (80% of the shortest lifetime,
# as the kubelet refreshes projected tokens): a pod running longer than its token keeps API access.
TOKEN_REFRESH_ANNOTATION = names.RESERVED_PREFIX + "token-refresh-after"
TOKEN_REFRESH_FRACTION = 0.8


def token_refresh_at(now: float, expiration_timestamp: str | None, requested_seconds: int) -> float:
    """When to mint a token again: 80% into its real lifetime (the server may extend what was asked)."""
    lifetime = float(requested_seconds)
    if expiration_timestamp:
        try:
            expires = datetime.datetime.fromisoformat(expiration_timestamp.replace("Z", "+00:00")).timestamp()
            lifetime = max(0.0, expires - now)
        except ValueError:
            pass
    return now + TOKEN_REFRESH_FRACTION * lifetime


def _namespace_index(obj: Obj) -> Iterable[str]:
    return [obj["metadata"].get("namespace", "")]


def token_secret_name(host_pod_name: str) -> str:
    return f"{host_pod_name}-sa-token"


class Pods(MirroredKind):
    resource: ClassVar[str] = "pods"
    rtype: ClassVar[ResourceType] = PODS

    virtual_services: Informer

    def setup(self, ctx: SyncContext) -> None:
        super().setup(ctx)
        # Virtual services per namespace: the docker-link env vars a pod would have had.
        self.virtual_services = ctx.virtual.informer(SERVICES, indexers={NAMESPACE_INDEX: _namespace_index})
        self.host_services = ctx.host.informer(
            SERVICES, namespace=ctx.host_namespace, label_selector=ctx.marker_selector
        )
        self.host_services.add_listener(self._on_host_service)
        self.host_secrets = ctx.host.informer(
            SECRETS, namespace=ctx.host_namespace, label_selector=ctx.marker_selector
        )
        # Namespace labels resolve `namespaceSelector` in affinity terms.
        self.namespaces = ctx.virtual.informer(NAMESPACES)

    def _on_host_service(self, old: Obj | None, new: Obj | None) -> None:
        """The kube-dns copy got its ClusterIP: pods waiting for DNS can go now."""
        if new is None or new["metadata"]["name"] != self.dns_service_host_name:
            return
        if (old or {}).get("spec", {}).get("clusterIP") == new.get("spec", {}).get("clusterIP"):
            return
        for pod in self.virtual_informer.store.list():
            if not pod.get("spec", {}).get("nodeName"):
                self.queue_add(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")

    @property
    def dns_service_host_name(self) -> str:
        return self.ctx.host_name("kube-dns", "kube-system")

    def dns_ip(self) -> str | None:
        svc = self.host_services.store.get(f"{self.ctx.host_namespace}/{self.dns_service_host_name}")
        ip = (svc or {}).get("spec", {}).get("clusterIP")
        return str(ip) if ip and ip != "None" else None

    def pod_context(self, virtual: Obj, token_secret: str | None) -> pod_translate.PodContext:
        namespace = virtual["metadata"]["namespace"]
        return pod_translate.PodContext(
            vcluster=self.ctx.vcluster,
            host_namespace=self.ctx.host_namespace,
            cluster_domain=self.ctx.options.cluster_domain,
            kube_service_ip=self.ctx.kube_service_ip,
            dns_ip=self.dns_ip(),
            service_env=self.virtual_services.store.by_index(NAMESPACE_INDEX, namespace),
            token_secret_name=token_secret,
            sync_priority_classes=self.ctx.options.syncs("priorityclasses"),
            namespace_labels=self._namespace_labels() if (virtual.get("spec") or {}).get("affinity") else {},
        )

    def _namespace_labels(self) -> dict[str, dict[str, str]]:
        return {
            ns["metadata"]["name"]: ns["metadata"].get("labels") or {} for ns in self.namespaces.store.list()
        }

    # --- reconcile

    async def reconcile(self, key: str) -> float | None:
        sides = await self.both_sides(key)
        if sides is None:
            return None
        virtual, host = sides
        if virtual is None:
            if host is not None and not host["metadata"].get("deletionTimestamp"):
                await self.delete_host(host)
            return None
        vmeta = virtual["metadata"]
        if vmeta.get("deletionTimestamp"):
            if host is None:
                await self.delete_virtual(virtual, grace_period_seconds=0)
            elif not host["metadata"].get("deletionTimestamp"):
                await self.delete_host(host, grace_period_seconds=vmeta.get("deletionGracePeriodSeconds"))
            else:
                await self._sync_status(virtual, host)
            return None
        if host is None:
            if virtual.get("spec", {}).get("nodeName"):
                # It ran on the host and the host pod is gone: the host decided (eviction, deletion).
                log.info("host pod gone after it started; deleting the virtual pod", extra={"pod": key})
                await self.delete_virtual(virtual, grace_period_seconds=0)
                return None
            await self.create(virtual)
            return None
        if host["metadata"].get("deletionTimestamp"):
            grace = host["metadata"].get("deletionGracePeriodSeconds")
            await self.delete_virtual(virtual, grace_period_seconds=grace)
        due_in = self.token_refresh_due_in(virtual, host)
        if due_in == 0.0:
            await self._write_token_secret(virtual, host, pod_translate.token_requests(virtual))
            due_in = None  # the Secret's update event brings us back with the new deadline
        await self._bind(virtual, host)
        await self._sync_status(virtual, host)
        patch = pod_translate.host_pod_update(virtual, host, self.pod_context(virtual, None))
        if patch is not None:
            await self.patch_host(host, patch)
        await self._sync_host_subresources(virtual, host)
        return due_in

    async def _bind(self, virtual: Obj, host: Obj) -> None:
        node = host.get("spec", {}).get("nodeName")
        if not node or virtual.get("spec", {}).get("nodeName"):
            return
        nodes = self.ctx.syncers.get("nodes")
        if nodes is not None:
            await nodes.ensure(node)  # type: ignore[attr-defined]  # FakeNodes; the Protocol stays minimal
        meta = virtual["metadata"]
        try:
            await self.ctx.virtual_client.create_subresource(
                PODS,
                meta["name"],
                meta["namespace"],
                "binding",
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                },
            )
        except ApiError as err:
            if not err.conflict:  # already bound: the next event shows it
                raise

    async def _sync_host_subresources(self, virtual: Obj, host: Obj) -> None:
        """Readiness-gate conditions (only the tenant's controllers set them) and `kubectl debug`
        containers reach the host pod through their subresources; both are no-ops almost always."""
        meta = host["metadata"]
        gates = pod_translate.host_status_update(virtual, host)
        if gates is not None:
            await self.ctx.host_client.patch(
                PODS, meta["name"], {"status": gates}, meta["namespace"], subresource="status"
            )
        if virtual.get("spec", {}).get("ephemeralContainers"):
            token_secret = token_secret_name(meta["name"]) if pod_translate.token_requests(virtual) else None
            ephemeral = pod_translate.host_ephemeral_containers(
                virtual, host, self.pod_context(virtual, token_secret)
            )
            if ephemeral is not None:
                await self.ctx.host_client.patch(
                    PODS,
                    meta["name"],
                    {"spec": {"ephemeralContainers": ephemeral}},
                    meta["namespace"],
                    subresource="ephemeralcontainers",
                )

    async def _sync_status(self, virtual: Obj, host: Obj) -> None:
        """Host status wins. A merge patch (no resourceVersion precondition) cannot conflict with
        the binding written a moment before; keys the host dropped are removed with nulls."""
        status = pod_translate.virtual_status_update(virtual, host)
        if status is None:
            return
        patch: Obj = dict(status)
        for key in virtual.get("status") or {}:
            if key not in status:
                patch[key] = None
        meta = virtual["metadata"]
        await self.ctx.virtual_client.patch(
            PODS, meta["name"], {"status": patch}, meta["namespace"], subresource="status"
        )

    # --- create

    async def create(self, virtual: Obj, body: Obj | None = None) -> None:
        level = self.ctx.options.pod_security_standard
        violations = podsecurity.check_pod(virtual, level)
        if violations:
            await self.ctx.recorder.warning(
                virtual,
                SYNC_ERROR,
                f"refused by pod security level {level!r}: " + "; ".join(violations),
            )
            return
        collisions = self.colliding_references(virtual)
        if collisions:
            await self.ctx.recorder.warning(
                virtual,
                SYNC_ERROR,
                "not synced: its host name would point at another object's host copy: "
                + "; ".join(collisions),
            )
            return
        host_name = self.ctx.host_name(virtual["metadata"]["name"], virtual["metadata"]["namespace"])
        requests = pod_translate.token_requests(virtual)
        secret = token_secret_name(host_name) if requests else None
        try:
            body = body or pod_translate.translate_pod(virtual, self.pod_context(virtual, secret))
        except pod_translate.DnsNotReady:
            await self.ctx.recorder.warning(
                virtual,
                SYNC_ERROR,
                "waiting for the DNS service kube-system/kube-dns of the virtual cluster to be synced",
            )
            return  # the kube-dns host service listener requeues us
        if not requests:
            await super().create(virtual, body)
            return
        # The tokens are minted in the virtual cluster while the host pod is being created: the two
        # round trips overlap instead of adding up (the Secret needs the host pod's uid, so it waits).
        minting = asyncio.create_task(self._mint_tokens(virtual, requests), name=f"mint-tokens-{host_name}")
        try:
            created = await self.create_host(virtual, body)
            if created is not None:
                data, refresh_at = await minting
                await self._store_token_secret(virtual, created, data, refresh_at)
        finally:
            if not minting.done():
                minting.cancel()  # the create failed or we are cancelled: the tokens are not needed
            elif not minting.cancelled():
                minting.exception()  # a minting error after a refused create is not worth a log line

    def colliding_references(self, virtual: Obj) -> list[str]:
        """References whose host name already belongs to ANOTHER virtual object.

        With the ambiguous `-x-` names, `cfg` in `prod-x-team` and `cfg-x-prod` in `team` share a host
        name; a pod in `prod-x-team` mounting `cfg` would read the other namespace's data. Such a pod
        is refused instead (the referenced object itself gets its own SyncError from its kind).
        """
        namespace = virtual["metadata"]["namespace"]
        found = []
        for resource, refs in (
            ("configmaps", pod_translate.referenced_configmaps),
            ("secrets", pod_translate.referenced_secrets),
            ("persistentvolumeclaims", pod_translate.referenced_pvcs),
        ):
            kind_syncer = self.ctx.syncers.get(resource)
            if not isinstance(kind_syncer, MirroredKind):
                continue
            for name in refs(virtual):
                host = kind_syncer.host_for(namespace, name)
                if host is None:
                    continue
                owned = kind_syncer.ownership_of(host, namespace, name, None)
                if owned is not Ownership.OURS:
                    claimed = metadata.virtual_key_of(host)
                    owner = f"{claimed[0]}/{claimed[1]}" if claimed else "an object this cluster does not own"
                    found.append(f"{kind_syncer.kind} {name} -> {host['metadata']['name']} (used by {owner})")
        return found

    async def _write_token_secret(
        self, virtual: Obj, host: Obj, requests: list[pod_translate.TokenRequestSpec]
    ) -> None:
        """Mint the pod's tokens in the virtual cluster; store them in a Secret the host pod owns."""
        data, refresh_at = await self._mint_tokens(virtual, requests)
        await self._store_token_secret(virtual, host, data, refresh_at)

    async def _mint_tokens(
        self, virtual: Obj, requests: list[pod_translate.TokenRequestSpec]
    ) -> tuple[dict[str, str], float]:
        """TokenRequests bound to the virtual pod: the Secret's data and when to mint them again."""
        meta = virtual["metadata"]
        account = virtual.get("spec", {}).get("serviceAccountName") or "default"
        data: dict[str, str] = {}
        refresh_at = float("inf")
        now = time.time()
        for key, audience, expiration in requests:
            review = await self.ctx.virtual_client.create_subresource(
                SERVICE_ACCOUNTS,
                account,
                meta["namespace"],
                "token",
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {
                        "audiences": [audience] if audience else [],
                        "expirationSeconds": expiration,
                        "boundObjectRef": {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "name": meta["name"],
                            "uid": meta["uid"],
                        },
                    },
                },
            )
            data[key] = base64.b64encode(review["status"]["token"].encode()).decode()
            refresh_at = min(
                refresh_at, token_refresh_at(now, review["status"].get("expirationTimestamp"), expiration)
            )
        return data, refresh_at

    async def _store_token_secret(
        self, virtual: Obj, host: Obj, data: dict[str, str], refresh_at: float
    ) -> None:
        """The Secret the host pod mounts, owned by it.

        The host pod is created first and mounts the Secret by name: a kubelet retries the mount
        until the Secret exists, and owning it from the start lets the host's garbage collector
        remove it with the pod — one write per pod fewer than patching the owner in afterwards.
        """
        meta = virtual["metadata"]
        host_pod_name = host["metadata"]["name"]
        secret_name = token_secret_name(host_pod_name)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name,
                "namespace": self.ctx.host_namespace,
                "labels": metadata.host_labels({}, self.ctx.vcluster, meta["namespace"]),
                "annotations": {
                    TOKEN_OWNER_ANNOTATION: host_pod_name,
                    TOKEN_REFRESH_ANNOTATION: str(int(refresh_at)),
                },
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Pod", "name": host_pod_name, "uid": host["metadata"]["uid"]}
                ],
            },
            "data": data,
        }
        try:
            await self.ctx.host_client.create(SECRETS, body, self.ctx.host_namespace)
        except ApiError as err:
            if not err.already_exists:
                raise
            existing = await self.ctx.host_client.get(SECRETS, secret_name, self.ctx.host_namespace)
            labels = existing["metadata"].get("labels") or {}
            if labels.get(names.MARKER_LABEL) != self.ctx.vcluster:
                raise RuntimeError(f"host secret {secret_name} exists and is not ours") from err
            existing["data"] = data
            existing["metadata"].setdefault("annotations", {}).update(
                {TOKEN_OWNER_ANNOTATION: host_pod_name, TOKEN_REFRESH_ANNOTATION: str(int(refresh_at))}
            )
            await self.ctx.host_client.replace(SECRETS, existing)

    def token_refresh_due_in(self, virtual: Obj, host: Obj) -> float | None:
        """Seconds until the pod's token Secret must be (re)written: 0 when missing or due, None when
        the pod has no tokens or is going away."""
        if host["metadata"].get("deletionTimestamp") or not pod_translate.token_requests(virtual):
            return None
        name = token_secret_name(host["metadata"]["name"])
        secret = self.host_secrets.store.get(f"{self.ctx.host_namespace}/{name}")
        if secret is None:
            return 0.0
        annotations = secret["metadata"].get("annotations") or {}
        try:
            refresh_at = float(annotations[TOKEN_REFRESH_ANNOTATION])
        except (KeyError, ValueError):
            return 0.0  # written by an older syncer: refresh now, then we know when
        return max(0.0, refresh_at - time.time())

    async def update(self, virtual: Obj, host: Obj) -> None:
        """A create found our own pod (the informer lagged): the host pod's event reconciles it."""
