"""The management API: Loft's `/kubernetes/management/apis/management.loft.sh/v1/...` paths over aiohttp.

Bearer tokens are checked with a TokenReview against the host, every request is authorized with a
SubjectAccessReview (group management.loft.sh, the resource's plural, and the non-standard verb `use`
for an instance's kubeconfig), then carried out against the host API server with the controller's own
credentials. Bodies may be YAML or JSON, as in Loft's curl examples.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import yaml
from aiohttp import web

from proxy.auth import AuthenticationError, Authenticator, UserInfo, authorize
from syncer.kube.client import ApiError, KubeClient, KubeError

from .objects import imported_instance, read_kubeconfig
from .resources import API_VERSION, BY_PLURAL, GROUP, VIRTUAL_CLUSTER_INSTANCES, project_namespace

log = logging.getLogger(__name__)

PREFIX = "/kubernetes/management/apis/management.loft.sh/v1"
HOST_PREFIX = "/apis/management.loft.sh/v1"


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }
    return web.json_response(body, status=code)


class ManagementAPI:
    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.authn = Authenticator(client)

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get(PREFIX, self.discovery)
        r.add_post(PREFIX + "/projects/{project}/importvirtualcluster", self.import_vcluster)
        r.add_route(
            "*", PREFIX + "/namespaces/{namespace}/virtualclusterinstances/{name}/kubeconfig", self.kubeconfig
        )
        r.add_route("*", PREFIX + "/namespaces/{namespace}/{plural}", self.resource)
        r.add_route("*", PREFIX + "/namespaces/{namespace}/{plural}/{name}", self.resource)
        r.add_route("*", PREFIX + "/namespaces/{namespace}/{plural}/{name}/{subresource}", self.resource)
        r.add_route("*", PREFIX + "/{plural}", self.resource)
        r.add_route("*", PREFIX + "/{plural}/{name}", self.resource)
        r.add_route("*", PREFIX + "/{plural}/{name}/{subresource}", self.resource)
        return app

    async def _user(self, request: web.Request) -> UserInfo:
        auth = request.headers.get("Authorization")
        if not auth:
            raise AuthenticationError(401, "Unauthorized: a bearer token is required")
        return await self.authn.authenticate(None, auth)

    async def _allowed(
        self, user: UserInfo, verb: str, plural: str, namespace: str = "", name: str = "", sub: str = ""
    ) -> web.Response | None:
        decision = await authorize(
            self.client,
            user,
            verb=verb,
            resource=plural,
            subresource=sub,
            namespace=namespace,
            name=name,
            group=GROUP,
        )
        if decision.allowed:
            return None
        where = f" in the namespace {namespace!r}" if namespace else ""
        what = f'{plural}.{GROUP} "{name}"' if name else f"{plural}.{GROUP}"
        return _status(
            403,
            "Forbidden",
            f'{what} is forbidden: User "{user.name}" cannot {verb} resource {plural!r}{where}',
        )

    async def discovery(self, request: web.Request) -> web.Response:
        try:
            await self._user(request)
        except AuthenticationError as err:
            return _status(err.status, "Unauthorized", err.message)
        resources = [
            {
                "name": rt.plural,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            }
            for rt in BY_PLURAL.values()
        ]
        return web.json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": API_VERSION,
                "resources": resources,
            }
        )

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        return yaml.safe_load(raw.decode())

    async def resource(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        plural, namespace, name, sub = (
            info["plural"],
            info.get("namespace", ""),
            info.get("name", ""),
            info.get("subresource", ""),
        )
        rt = BY_PLURAL.get(plural)
        if rt is None or (namespace and not rt.namespaced):
            return _status(404, "NotFound", f"the server could not find the requested resource ({plural})")
        method = request.method
        watch = request.query.get("watch") in ("1", "true")
        verb = {
            "GET": "get" if name else ("watch" if watch else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method)
        if verb is None:
            return _status(405, "MethodNotAllowed", f"{method} is not supported")
        try:
            user = await self._user(request)
            denied = await self._allowed(user, verb, plural, namespace, name, sub)
            if denied is not None:
                return denied
            if watch:
                return await self._watch(request, plural, namespace)
            path = HOST_PREFIX + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
            path += (f"/{name}" if name else "") + (f"/{sub}" if sub else "")
            body = await self._body(request) if method in ("POST", "PUT", "PATCH") else None
            content_type = (
                request.headers.get("Content-Type", "application/json")
                if method == "PATCH"
                else "application/json"
            )
            if content_type.startswith("application/yaml"):
                content_type = "application/merge-patch+json"
            result = await self.client.request(
                method, path, params=dict(request.query), body=body, content_type=content_type
            )
            return web.json_response(result, status=201 if method == "POST" else 200)
        except AuthenticationError as err:
            return _status(err.status, "Unauthorized", err.message)
        except ApiError as err:
            return web.json_response(
                err.body or {"kind": "Status", "code": err.status, "message": str(err)}, status=err.status
            )
        except yaml.YAMLError as err:
            return _status(400, "BadRequest", f"body is neither JSON nor YAML: {err}")
        except KubeError as err:
            return _status(503, "ServiceUnavailable", str(err))

    async def _watch(self, request: web.Request, plural: str, namespace: str) -> web.StreamResponse:
        rt = BY_PLURAL[plural]
        rv = request.query.get("resourceVersion") or ""
        if not rv:
            listed = await self.client.list(rt, namespace or None)
            rv = listed["metadata"].get("resourceVersion", "")
            initial = listed.get("items") or []
        else:
            initial = []
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for item in initial:
            await response.write(json.dumps({"type": "ADDED", "object": item}).encode() + b"\n")
        timeout = int(request.query.get("timeoutSeconds") or 300)
        async for event in self.client.watch(
            rt,
            namespace or None,
            resource_version=rv,
            label_selector=request.query.get("labelSelector"),
            timeout_seconds=timeout,
        ):
            await response.write(json.dumps(event).encode() + b"\n")
        await response.write_eof()
        return response

    async def kubeconfig(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        try:
            user = await self._user(request)
            denied = await self._allowed(user, "use", "virtualclusterinstances", namespace, name)
            if denied is not None:
                return denied
            vci = await self.client.get(VIRTUAL_CLUSTER_INSTANCES, name, namespace)
            ref = (vci.get("spec") or {}).get("clusterRef") or {}
            if not ref.get("namespace"):
                return _status(409, "Conflict", "the instance has no host namespace yet")
            text = await read_kubeconfig(self.client, ref.get("virtualCluster") or name, ref["namespace"])
            if text is None:
                return _status(409, "Conflict", "the virtual cluster is not ready: no kubeconfig yet")
        except AuthenticationError as err:
            return _status(err.status, "Unauthorized", err.message)
        except ApiError as err:
            return web.json_response(err.body or {"message": str(err)}, status=err.status)
        return web.json_response(
            {
                "apiVersion": API_VERSION,
                "kind": "VirtualClusterInstanceKubeConfig",
                "metadata": {"name": name, "namespace": namespace},
                "status": {"kubeConfig": text},
            }
        )

    async def import_vcluster(self, request: web.Request) -> web.Response:
        project = request.match_info["project"]
        try:
            user = await self._user(request)
            body = await self._body(request) or {}
            obj = imported_instance(project, body.get("sourceVirtualCluster") or {})
            denied = await self._allowed(
                user, "create", "virtualclusterinstances", project_namespace(project)
            )
            if denied is not None:
                return denied
            await self.client.create(VIRTUAL_CLUSTER_INSTANCES, obj)
        except AuthenticationError as err:
            return _status(err.status, "Unauthorized", err.message)
        except ValueError as err:
            return _status(400, "BadRequest", str(err))
        except ApiError as err:
            return web.json_response(err.body or {"message": str(err)}, status=err.status)
        return web.json_response({"apiVersion": API_VERSION, "kind": "ProjectImportVirtualCluster", **body})
