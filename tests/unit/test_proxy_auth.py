"""Authentication at the proxy: certificates, tokens (cached, bounded, shared in flight), anonymous."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from proxy.auth import (
    ANONYMOUS,
    AuthenticationError,
    Authenticator,
    TokenCache,
    UserInfo,
    authorize,
    user_from_peercert,
    user_from_token_review,
)
from syncer.kube.client import KubeClient


def test_user_from_peercert() -> None:
    cert = {
        "subject": (
            (("organizationName", "system:masters"),),
            (("organizationName", "devs"),),
            (("commonName", "alice"),),
        )
    }
    user = user_from_peercert(cert)
    assert user == UserInfo("alice", ("system:masters", "devs", "system:authenticated"))
    assert user_from_peercert(None) is None
    assert user_from_peercert({}) is None
    assert user_from_peercert({"subject": ((("organizationName", "x"),),)}) is None  # no CN


def test_user_from_token_review() -> None:
    review = {
        "status": {
            "authenticated": True,
            "user": {
                "username": "system:serviceaccount:ns:sa",
                "uid": "u1",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["p"]},
            },
        }
    }
    user = user_from_token_review(review)
    assert user is not None and user.name == "system:serviceaccount:ns:sa" and user.uid == "u1"
    assert user.extra_map == {"authentication.kubernetes.io/pod-name": ["p"]}
    assert user.review_subject()["extra"] == {"authentication.kubernetes.io/pod-name": ["p"]}
    assert user_from_token_review({"status": {"authenticated": False}}) is None


def test_token_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    cache = TokenCache(max_entries=2, clock=lambda: now[0])
    a, b, c = (TokenCache.key(t) for t in "abc")
    cache.put(a, ANONYMOUS, ttl=10)
    cache.put(b, None, ttl=2)
    assert cache.get(a) == (True, ANONYMOUS)
    assert cache.get(b) == (True, None)  # a cached rejection
    cache.put(c, ANONYMOUS, ttl=10)  # evicts the least recently used: a
    assert len(cache) == 2 and cache.get(a) == (False, None)
    now[0] = 3
    assert cache.get(b) == (False, None)  # rejections expire sooner
    assert cache.get(c) == (True, ANONYMOUS)
    now[0] = 11
    assert cache.get(c) == (False, None)
    assert TokenCache.key("secret") != b"secret"  # never the token itself


class FakeApiServer:
    """A real local HTTP server answering TokenReview and SubjectAccessReview like kube-apiserver."""

    def __init__(self) -> None:
        self.reviews = 0
        self.sars: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.release.set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.token_review)
        app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self.sar)
        return app

    async def token_review(self, request: web.Request) -> web.Response:
        self.reviews += 1
        await self.release.wait()
        body = await request.json()
        token = body["spec"]["token"]
        if token.startswith("good-"):
            user = {"username": token[5:], "groups": ["system:authenticated"]}
            return web.json_response({"status": {"authenticated": True, "user": user}})
        return web.json_response({"status": {"authenticated": False, "error": "invalid"}})

    async def sar(self, request: web.Request) -> web.Response:
        spec = (await request.json())["spec"]
        self.sars.append(spec)
        allowed = spec["user"] == "alice" and spec["resourceAttributes"]["verb"] == "create"
        return web.json_response({"status": {"allowed": allowed}})


@pytest.fixture
async def api() -> Any:
    fake = FakeApiServer()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = KubeClient(f"http://127.0.0.1:{port}", name="virtual", max_retries=0)
    try:
        yield fake, client
    finally:
        await client.close()
        await runner.cleanup()


async def test_authenticate_order_and_caching(api: Any) -> None:
    fake, client = api
    auth = Authenticator(client)
    cert = {"subject": ((("commonName", "carol"),),)}
    assert (await auth.authenticate(cert, "Bearer good-bob")).name == "carol"  # certificate first
    assert await auth.authenticate(None, None) == ANONYMOUS
    assert (await auth.authenticate(None, "Bearer good-bob")).name == "bob"
    assert (await auth.authenticate(None, "bearer  good-bob ")).name == "bob"
    assert fake.reviews == 1  # cached
    for header in ("Bearer bad", "Basic Ym9iOnB3", "Bearer", "Bearer "):
        with pytest.raises(AuthenticationError) as exc:
            await auth.authenticate(None, header)
        assert exc.value.status == 401
    reviews = fake.reviews
    with pytest.raises(AuthenticationError):
        await auth.authenticate(None, "Bearer bad")
    assert fake.reviews == reviews  # rejections are cached too (briefly)


async def test_concurrent_first_requests_share_one_review(api: Any) -> None:
    fake, client = api
    auth = Authenticator(client)
    fake.release.clear()
    waiting = [asyncio.create_task(auth.review("good-dave")) for _ in range(20)]
    await asyncio.sleep(0)  # let every task register before the review completes
    fake.release.set()
    users = await asyncio.gather(*waiting)
    assert {u.name for u in users if u} == {"dave"} and fake.reviews == 1


async def test_token_review_failure_is_503_and_not_cached() -> None:
    client = KubeClient("http://127.0.0.1:9", name="virtual", max_retries=0, connect_timeout=1)
    try:
        auth = Authenticator(client)
        with pytest.raises(AuthenticationError) as exc:
            await auth.authenticate(None, "Bearer good-x")
        assert exc.value.status == 503 and len(auth.cache) == 0
    finally:
        await client.close()


async def test_authorize_sends_the_whole_identity(api: Any) -> None:
    fake, client = api
    user = UserInfo("alice", ("devs",), "u1", (("scopes", ("a",)),))
    decision = await authorize(
        client, user, verb="create", resource="pods", subresource="exec", namespace="ns", name="p"
    )
    assert decision.allowed
    spec = fake.sars[-1]
    assert spec["user"] == "alice" and spec["groups"] == ["devs"] and spec["uid"] == "u1"
    assert spec["extra"] == {"scopes": ["a"]}
    assert spec["resourceAttributes"] == {
        "verb": "create",
        "group": "",
        "resource": "pods",
        "subresource": "exec",
        "namespace": "ns",
        "name": "p",
    }
    assert not (await authorize(client, user, verb="get", resource="pods")).allowed
