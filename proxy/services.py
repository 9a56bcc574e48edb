"""`POST namespaces/<ns>/services`: create the host service first, so both sides share one ClusterIP.

The virtual API server allocates ClusterIPs from the host's service CIDR, but independently of the
host. If it picked first, its IP could already be taken on the host and the syncer would have to
delete and recreate the virtual service with the host's IP (a new uid, a watch churn, clients that
saw the first IP). Creating on the host first and then creating the virtual service *with the host's
IP* (and node ports) avoids that for every service made through the proxy:

1. authorize `create services` in the virtual namespace (SubjectAccessReview): the host half is
   written with the syncer's credentials, so it must not happen for a caller the virtual cluster
   would refuse;
2. translate the body as the syncer does (`syncer.kinds.services.host_spec`, `host_metadata`) and
   create the host service. Its object-uid annotation is still empty — the syncer recognises such a
   *pending* copy and neither deletes it as an orphan nor replaces it as a previous incarnation for
   `PROXY_PENDING_SECONDS`, and fills the uid in once the virtual service exists;
3. create the virtual service with the host's `clusterIP(s)`, node ports and health-check node port,
   impersonating the caller, and return the virtual API server's answer unchanged;
4. if that fails, delete the host service again (uid precondition: never someone else's).

Everything this flow cannot do host-first is passed through untouched and left to the syncer, which
reaches the same end state its usual way: `dryRun` requests, bodies that are not JSON (YAML,
protobuf), headless and ExternalName services (no ClusterIP to share), a name collision on the host,
a host refusal, and services sync switched off.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import secrets
from typing import Any

from aiohttp import web

from syncer.kinds.services import NODE_PORT_TYPES, host_spec
from syncer.kube.client import ApiError, JsonObj, KubeClient
from syncer.kube.resources import SERVICES
from syncer.options import SyncerOptions
from syncer.translate.metadata import host_metadata

from . import passthrough
from .auth import UserInfo, authorize
from .paths import CanonicalPath
from .routes import Route
from .status import forbidden, status_response
from .upstream import Upstream

__all__ = ["ServiceCreate", "virtual_body_with_host_allocation"]

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
"""The API server's own limit on a request body."""

# What the API server's generateName appends: 5 characters from an alphabet without vowels and
# look-alikes (k8s.io/apimachinery/pkg/util/rand).
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def _generated_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUMS) for _ in range(5))


def virtual_body_with_host_allocation(virtual: JsonObj, host: JsonObj) -> JsonObj:
    """The virtual service to create: the caller's, with what the host allocated copied in."""
    out = copy.deepcopy(virtual)
    vspec, hspec = out.setdefault("spec", {}), host.get("spec") or {}
    if hspec.get("clusterIP"):
        vspec["clusterIP"] = hspec["clusterIP"]
    if hspec.get("clusterIPs"):
        vspec["clusterIPs"] = list(hspec["clusterIPs"])
    if hspec.get("ipFamilies"):
        vspec["ipFamilies"] = list(hspec["ipFamilies"])
    if vspec.get("type") in NODE_PORT_TYPES:
        host_ports = {
            (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in hspec.get("ports") or []
        }
        for port in vspec.get("ports") or []:
            node_port = host_ports.get((port.get("port"), port.get("protocol", "TCP")))
            if node_port:
                port["nodePort"] = node_port
        if hspec.get("healthCheckNodePort"):
            vspec["healthCheckNodePort"] = hspec["healthCheckNodePort"]
    return out


class ServiceCreate:
    def __init__(
        self, options: SyncerOptions, virtual: KubeClient, host: KubeClient, virtual_upstream: Upstream
    ):
        self.options = options
        self.virtual = virtual
        self.host = host
        self.virtual_upstream = virtual_upstream

    def host_first(self, path: CanonicalPath, content_type: str) -> bool:
        """Whether this create may be done host-first at all (before reading the body)."""
        return (
            self.options.syncs("services")
            and "dryRun" not in path.params()
            and content_type.split(";")[0].strip().lower() in ("application/json", "")
        )

    async def handle(
        self,
        request: web.BaseRequest,
        route: Route,
        path: CanonicalPath,
        user: UserInfo,
        headers: list[tuple[str, str]],
    ) -> web.StreamResponse:
        """`headers`: the upstream headers for the virtual API server (identity included)."""
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return status_response(413, "request body too large")
        namespace = route.namespace
        try:
            virtual: Any = json.loads(body)
        except ValueError:
            virtual = None
        if not isinstance(virtual, dict) or not self._shareable(virtual, namespace):
            return (
                await passthrough.fetch(self.virtual_upstream, "POST", path.path_qs, headers, body)
            ).response()
        decision = await authorize(
            self.virtual, user, verb="create", resource="services", namespace=namespace
        )
        if not decision.allowed:
            return forbidden(user.name, "create", "services", "", namespace, "")
        meta = virtual.setdefault("metadata", {})
        if not meta.get("name"):
            meta["name"] = _generated_name(str(meta["generateName"]))
        meta["namespace"] = namespace
        host = await self._create_host(virtual)
        if host is None:
            return (
                await passthrough.fetch(self.virtual_upstream, "POST", path.path_qs, headers, body)
            ).response()
        to_create = virtual_body_with_host_allocation(virtual, host)
        try:
            created = await passthrough.fetch(
                self.virtual_upstream, "POST", path.path_qs, headers, json.dumps(to_create).encode()
            )
        except BaseException:
            # Also on cancellation (the client went away): shielded, so the rollback itself completes.
            await asyncio.shield(self._roll_back(host))
            raise
        if created.status >= 300:
            await self._roll_back(host)
        return created.response()

    @staticmethod
    def _shareable(virtual: JsonObj, namespace: str) -> bool:
        """A body the host-first flow understands; anything else the virtual API server judges."""
        meta = virtual.get("metadata")
        spec = virtual.get("spec")
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            return False
        if virtual.get("kind") not in (None, "Service") or virtual.get("apiVersion") not in (None, "v1"):
            return False
        if meta.get("namespace") not in (None, "", namespace):
            return False
        if not meta.get("name") and not meta.get("generateName"):
            return False
        return spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None"

    async def _create_host(self, virtual: JsonObj) -> JsonObj | None:
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": host_metadata(
                virtual,
                vcluster=self.options.name,
                host_namespace=self.options.target_namespace,
                kind="Service",
            ),
            "spec": host_spec(virtual, self.options.name),
        }
        try:
            return await self.host.create(SERVICES, body, self.options.target_namespace)
        except ApiError as exc:
            # Taken name, taken IP, host policy...: the ordinary path (virtual first, then the
            # syncer) handles and reports every one of these in the tenant's terms.
            log.info(
                "Host-first service create not possible; passing the create through",
                extra={
                    "service": f"{virtual['metadata']['namespace']}/{virtual['metadata']['name']}",
                    "err": str(exc),
                },
            )
            return None

    async def _roll_back(self, host: JsonObj) -> None:
        meta = host["metadata"]
        try:
            await self.host.delete(
                SERVICES, meta["name"], meta["namespace"], preconditions={"uid": meta["uid"]}, missing_ok=True
            )
        except ApiError as exc:
            log.warning(
                "Could not roll back the host service", extra={"hostService": meta["name"], "err": str(exc)}
            )
