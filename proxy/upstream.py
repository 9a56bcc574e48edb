"""An API server the proxy forwards to: the virtual one (as its admin, impersonating) or the host one
(as the syncer's ServiceAccount).

Built from an existing `KubeClient` so credentials are read once, in one place (`client.py`), and
token-file rotation keeps working: `auth_headers()` is asked on every request. The proxy does not use
the client's own session: pass-through needs a different policy — no retries (a request is forwarded
exactly once; retrying is the caller's decision), no total timeout (watches and `logs -f` last as long
as the client wants), no decompression (bodies are relayed as they are), no cookie jar, and no
headers added on the client's behalf.
"""

from __future__ import annotations

import ssl

import aiohttp
from yarl import URL

from syncer.kube.client import KubeClient

from .upgrade import UpgradeTarget

__all__ = ["Upstream"]

# Headers aiohttp would add on its own; a proxy must send only what the client sent (plus ours).
_SKIP_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})


class Upstream:
    def __init__(self, client: KubeClient, *, connect_timeout: float = 10.0) -> None:
        self.client = client
        self.name = client.name
        url = URL(client.server)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"unsupported API server URL {client.server!r}")
        self.base = url
        self.base_path = url.raw_path.rstrip("/")
        self.ssl_context: ssl.SSLContext | None = client.ssl_context if url.scheme == "https" else None
        if url.scheme == "https" and self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        port = url.port or (443 if url.scheme == "https" else 80)
        self.target = UpgradeTarget(
            host=url.host,
            port=port,
            ssl=self.ssl_context,
            server_hostname=client.tls_server_name or url.host,
            host_header=url.raw_authority,
        )
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """One pooled session per upstream, created inside the running loop on first use."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,
                ssl=self.ssl_context if self.ssl_context is not None else False,
                keepalive_timeout=30.0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self._connect_timeout, sock_connect=self._connect_timeout
                ),
            )
        return self._session

    def url(self, path_qs: str) -> URL:
        """Absolute URL of an already-encoded path (and query) on this upstream."""
        return URL(f"{self.base.scheme}://{self.base.raw_authority}{self.base_path}{path_qs}", encoded=True)

    def path(self, path_qs: str) -> str:
        """The request target to put on a raw upgrade connection."""
        return f"{self.base_path}{path_qs}"

    @property
    def server_hostname(self) -> str | None:
        return self.target.server_hostname if self.ssl_context is not None else None

    def auth_headers(self) -> dict[str, str]:
        return self.client.auth_headers()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
