"""Forward one ordinary HTTP request upstream and stream the answer back, unbuffered.

Streaming both ways is what makes the proxy usable for Kubernetes: a watch is one response that
never ends, `logs -f` likewise, and a large `apply` body should not sit in our memory. So the request
body is handed to the upstream as a stream (with the client's `Content-Length` when it sent one, else
chunked), and every chunk of the response is written to the client as soon as it arrives: a watch
event is on its way to the client before the next one is produced.

Upstream answers — success or error — are relayed unchanged: status, reason, end-to-end headers and
body bytes (compressed bodies stay compressed). Only when there is no answer at all (connection
refused, reset before the head, TLS failure) do we make one: a 503 `Status`. If the upstream breaks
off mid-body there is nothing truthful left to say; the client connection is closed so the client
sees a truncated stream, exactly as it would talking to the API server directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .headers import downstream_headers
from .status import status_response
from .upstream import Upstream

__all__ = ["Fetched", "fetch", "forward"]

log = logging.getLogger(__name__)

_MAX_FILTERED_ERROR = 1024 * 1024
_WHOLE_BODY = 1024 * 1024
"""Answers up to this size with a Content-Length are relayed in one write; longer ones stream."""


async def _continue_if_expected(request: web.BaseRequest) -> None:
    """Answer `Expect: 100-continue` ourselves; the header itself is not forwarded."""
    if request.headers.get("Expect", "").lower() == "100-continue" and request.writer is not None:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def _without_expect(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    headers.popall("Expect", None)
    return headers


async def forward(
    request: web.BaseRequest,
    upstream: Upstream,
    *,
    path_qs: str,
    headers: CIMultiDict[str],
    body: bytes | None = None,
    error_filter: Callable[[bytes], bytes] | None = None,
    stream: bool = True,
) -> web.StreamResponse:
    """Send `request` (its method and streamed body, or `body`) to `upstream`, stream the answer back.

    `headers` are the complete upstream headers: the caller has already stripped the client's and
    added the upstream's credentials. `error_filter` rewrites the body of an error answer (>= 400),
    which is then read completely (at most 1 MiB) instead of streamed. With `stream` False (not a
    watch, not `follow`), an answer of unknown length is collected up to 1 MiB and written in one
    piece if it ends by then: nothing waits for such an answer's first bytes.
    """
    data: object = body
    if body is None and request.body_exists:
        await _continue_if_expected(request)
        data = request.content
    elif body is not None:
        headers.popall("Content-Length", None)
        headers.popall("Transfer-Encoding", None)
    try:
        upstream_response = await upstream.session().request(
            request.method,
            upstream.url(path_qs),
            headers=_without_expect(headers),
            data=data,
            allow_redirects=False,
            server_hostname=upstream.server_hostname,
        )
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        log.warning(
            "Upstream unreachable", extra={"upstream": upstream.name, "path": path_qs, "err": repr(exc)}
        )
        return status_response(503, f"the {upstream.name} API server is not reachable")
    async with upstream_response:
        if error_filter is not None and upstream_response.status >= 400:
            payload = await upstream_response.content.read(_MAX_FILTERED_ERROR)
            if not upstream_response.headers.get("Content-Encoding"):
                payload = error_filter(payload)  # a compressed body is relayed as it is
            headers = downstream_headers(upstream_response.headers.items())
            headers.popall("Content-Length", None)
            return web.Response(
                status=upstream_response.status,
                reason=upstream_response.reason,
                headers=headers,
                body=payload,
            )
        length = upstream_response.content_length
        if length is not None and length <= _WHOLE_BODY:
            # A small answer of known size (most GETs): written as one piece, head and body together,
            # instead of head, body and end separately — a third of the TLS records and system calls,
            # which is most of what the proxy costs per request.
            return _whole(upstream_response, await upstream_response.read())
        collected: list[bytes] = []
        if not stream and length is None:
            # Lists come chunked. Collected up to a bound and sent whole, for the same reason.
            size = 0
            while size <= _WHOLE_BODY:
                chunk = await upstream_response.content.readany()
                if not chunk:
                    return _whole(upstream_response, b"".join(collected))
                collected.append(chunk)
                size += len(chunk)
        response = web.StreamResponse(
            status=upstream_response.status,
            reason=upstream_response.reason,
            headers=downstream_headers(upstream_response.headers.items()),
        )
        await response.prepare(request)
        if collected:
            await response.write(b"".join(collected))
        try:
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
        except (
            ConnectionResetError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientConnectionError,
            TimeoutError,
        ) as exc:
            # Either side broke off mid-body. The head is out, so the only honest signal left for the
            # client (if it is still there) is a cut connection, never a clean end of a truncated body.
            log.debug("Stream ended early", extra={"upstream": upstream.name, "err": repr(exc)})
            response.force_close()
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response


def _whole(upstream_response: aiohttp.ClientResponse, payload: bytes) -> web.Response:
    """One write of head and body. The upstream's Content-Length is kept (for HEAD it is the length
    of the body not sent); an answer that came chunked gets one computed from the body."""
    return web.Response(
        status=upstream_response.status,
        reason=upstream_response.reason,
        headers=downstream_headers(upstream_response.headers.items()),
        body=payload,
    )


@dataclass(frozen=True)
class Fetched:
    """A complete (small) upstream answer, read into memory so the caller can decide what to do."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def response(self) -> web.Response:
        headers = downstream_headers(self.headers)
        headers.popall("Content-Length", None)
        return web.Response(status=self.status, reason=self.reason or None, body=self.body, headers=headers)


async def fetch(
    upstream: Upstream,
    method: str,
    path_qs: str,
    headers: Iterable[tuple[str, str]],
    body: bytes | None = None,
    *,
    max_body: int = 16 * 1024 * 1024,
) -> Fetched:
    """One request whose answer is read completely (service create: we need the status first)."""
    out = CIMultiDict(headers)
    out.popall("Content-Length", None)
    out.popall("Transfer-Encoding", None)
    async with upstream.session().request(
        method,
        upstream.url(path_qs),
        headers=_without_expect(out),
        data=body,
        allow_redirects=False,
        server_hostname=upstream.server_hostname,
    ) as resp:
        payload = await resp.content.read(max_body)
        return Fetched(resp.status, resp.reason or "", list(resp.headers.items()), payload)
