"""Pass-through against a real local upstream: identity replaced by impersonation, bodies streamed both
ways without buffering, upstream answers relayed unchanged, metrics with bounded labels."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from yarl import URL

from proxy.handler import Proxy, is_watch
from proxy.paths import canonicalize
from proxy.server import build_server
from syncer.kube.client import KubeClient
from syncer.options import SyncerOptions


class Upstream:
    """Stands in for the virtual API server (and, unused here, the host one)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.second_event = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.token_review)
        app.router.add_get("/api/v1/namespaces/ns/configmaps", self.watch)
        app.router.add_post("/api/v1/namespaces/ns/configmaps", self.create)
        app.router.add_get("/api/v1/namespaces/ns/configmaps/taken", self.conflict)
        app.router.add_get("/api/v1/namespaces/ns/secrets", self.chunked_list)
        return app

    async def chunked_list(self, request: web.Request) -> web.StreamResponse:
        """A list answered in chunks, without a length (as kube-apiserver sends lists)."""
        parts = int(request.query.get("parts", "3"))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(parts):
            await response.write(b"x" * 100_000)
        await response.write_eof()
        return response

    async def token_review(self, request: web.Request) -> web.Response:
        token = (await request.json())["spec"]["token"]
        user = {"username": token, "groups": ["team", "system:authenticated"], "extra": {"a/b": ["c"]}}
        return web.json_response({"status": {"authenticated": token == "bob", "user": user}})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"headers": list(request.headers.items()), "query": request.query_string})
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        await response.write(b'{"type":"ADDED","object":{"metadata":{"name":"one"}}}\n')
        # Only once the client has *received* the first event does the second one exist: a proxy that
        # buffered the stream would deadlock here.
        await asyncio.wait_for(self.second_event.wait(), 10)
        await response.write(b'{"type":"ADDED","object":{"metadata":{"name":"two"}}}\n')
        return response

    async def create(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append({"headers": list(request.headers.items()), "body": body})
        return web.json_response({"received": len(body)}, status=201)

    async def conflict(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"kind": "Status", "code": 409, "reason": "Conflict", "message": "taken"},
            status=409,
            headers={"Audit-Id": "a1", "Warning": "299 - careful"},
        )


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[Upstream, str]]:
    upstream = Upstream()
    up_runner = web.AppRunner(upstream.app())
    await up_runner.setup()
    await web.TCPSite(up_runner, "127.0.0.1", 0).start()
    up_url = f"http://127.0.0.1:{up_runner.addresses[0][1]}"
    virtual = KubeClient(up_url, name="virtual", max_retries=0)
    host = KubeClient(up_url, name="host", max_retries=0)
    options = SyncerOptions(name="vc", target_namespace="host-ns", virtual_kubeconfig="unused")
    proxy = Proxy(options, virtual, host)
    runner = web.ServerRunner(build_server(proxy), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield upstream, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await proxy.close()
        await virtual.close()
        await host.close()
        await up_runner.cleanup()


FORGED = {
    "Authorization": "Bearer bob",
    "Impersonate-User": "admin",
    "Impersonate-Group": "system:masters",
    "X-Remote-User": "admin",
}


async def test_watch_is_streamed_unbuffered_with_identity_replaced(proxied: tuple[Upstream, str]) -> None:
    upstream, url = proxied
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{url}/api/v1/namespaces/ns/configmaps?watch=true&resourceVersion=5", headers=FORGED
        ) as resp,
    ):
        assert resp.status == 200
        first = await asyncio.wait_for(resp.content.readline(), 10)
        assert json.loads(first)["object"]["metadata"]["name"] == "one"
        upstream.second_event.set()
        second = await asyncio.wait_for(resp.content.readline(), 10)
        assert json.loads(second)["object"]["metadata"]["name"] == "two"
    seen = upstream.seen[0]
    assert seen["query"] == "watch=true&resourceVersion=5"
    headers = seen["headers"]
    assert ("Impersonate-User", "bob") in headers
    assert [v for k, v in headers if k == "Impersonate-Group"] == ["team", "system:authenticated"]
    assert ("Impersonate-Extra-a%2Fb", "c") in headers
    assert not [k for k, v in headers if k.lower() in ("authorization", "x-remote-user")]
    assert not [v for k, v in headers if k == "Impersonate-User" and v == "admin"]


async def test_request_body_streams_and_errors_come_back_unchanged(proxied: tuple[Upstream, str]) -> None:
    upstream, url = proxied

    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"x" * 16384

    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/api/v1/namespaces/ns/configmaps", data=body(), headers={"Authorization": "Bearer bob"}
        ) as resp:
            assert resp.status == 201 and (await resp.json()) == {"received": 64 * 16384}
        async with session.get(f"{url}/api/v1/namespaces/ns/configmaps/taken") as resp:
            assert resp.status == 409
            assert resp.headers["Audit-Id"] == "a1" and resp.headers["Warning"] == "299 - careful"
            assert (await resp.json())["message"] == "taken"
        async with session.get(f"{url}/api/v1/x", headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 401 and (await resp.json())["reason"] == "Unauthorized"
        tricky = URL(f"{url}/api/v1/namespaces/ns/pods/p/%2e%2e/exec", encoded=True)  # sent as is
        async with session.get(tricky) as resp:
            assert resp.status == 403 and (await resp.json())["kind"] == "Status"
    # Anonymous callers are impersonated as such, never as the proxy's own identity.
    anonymous = [h for h in upstream.seen if ("Impersonate-User", "system:anonymous") in h["headers"]]
    assert not anonymous or all(
        ("Impersonate-Group", "system:unauthenticated") in h["headers"] for h in anonymous
    )


async def test_chunked_answers_are_sent_whole_when_small_and_streamed_when_large(
    proxied: tuple[Upstream, str],
) -> None:
    _, url = proxied
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/v1/namespaces/ns/secrets?parts=3") as resp:
            assert resp.headers.get("Content-Length") == "300000"  # collected: one write
            assert len(await resp.read()) == 300_000
        async with session.get(f"{url}/api/v1/namespaces/ns/secrets?parts=30") as resp:
            assert "Content-Length" not in resp.headers  # over the bound: streamed as it comes
            assert len(await resp.read()) == 3_000_000
        async with session.head(f"{url}/api/v1/namespaces/ns/configmaps/taken") as resp:
            assert resp.status == 409


async def test_metrics_have_bounded_labels(proxied: tuple[Upstream, str]) -> None:
    _, url = proxied
    before = (
        REGISTRY.get_sample_value(
            "vcluster_proxy_requests_total", {"verb": "read", "route": "refused", "code": "4xx"}
        )
        or 0.0
    )
    async with aiohttp.ClientSession() as session, session.get(f"{url}/a//b") as resp:
        assert resp.status == 403
    after = REGISTRY.get_sample_value(
        "vcluster_proxy_requests_total", {"verb": "read", "route": "refused", "code": "4xx"}
    )
    assert after == before + 1


def test_is_watch() -> None:
    assert is_watch(canonicalize("/api/v1/pods?watch=true"))
    assert is_watch(canonicalize("/api/v1/pods?watch=1"))
    assert is_watch(canonicalize("/api/v1/watch/pods"))
    assert is_watch(canonicalize("/apis/apps/v1/watch/deployments"))
    assert not is_watch(canonicalize("/api/v1/pods?watch=false"))
