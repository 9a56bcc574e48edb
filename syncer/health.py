"""/healthz, /readyz and /metrics on a small plain-HTTP server of its own.

Kept apart from the TLS proxy port: kubelet probes and Prometheus scrapes need no client
certificate, and a proxy under load must not make the pod look dead.

* /healthz — the event loop answers (liveness).
* /readyz  — caches are synced and this replica is either the leader or a healthy standby; the
  proxy serves from any replica, so a standby is ready too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4


def build_app(ready: Callable[[], tuple[bool, str]]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = ready()
        return web.Response(status=200 if ok else 503, text=why)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(address: str, ready: Callable[[], tuple[bool, str]]) -> None:
    """Serve until cancelled; cleanup is shielded so cancellation cannot leak the socket."""
    host, _, port = address.rpartition(":")
    runner = web.AppRunner(build_app(ready), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host or "0.0.0.0", int(port))
        await site.start()
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(runner.cleanup())
