"""THE connection takeover: splice an HTTP/1.1 upgrade (SPDY/3.1 or WebSocket) byte for byte.

`kubectl exec/attach/port-forward` upgrade their HTTP request to a multiplexed stream protocol:
SPDY/3.1 (legacy; POST + `Upgrade: SPDY/3.1`) or WebSocket (kubectl >= 1.31; GET +
`Upgrade: websocket` with subprotocols `v5.channel.k8s.io`, `SPDY/3.1+portforward.k8s.io`, ...).
The proxy does not speak either protocol and must not: subprotocol and stream-version negotiation
belong to kubectl and the API server/kubelet at the far end (a proxy that terminated the WebSocket
would have to choose a subprotocol before the far end did). So, as Kubernetes' own
`UpgradeAwareHandler` does, we:

1. dial the upstream with a dedicated HTTP/1.1 connection (never pooled, never HTTP/2), send the
   rewritten request head, and read the upstream's response head;
2. not 101: relay the status and body (the API server's `Status`, so kubectl prints the real error
   and can fall back from WebSocket to SPDY) and close the client connection;
3. 101: take the client connection over, write the upstream's raw 101 head to it unchanged, then copy
   bytes both ways until either side ends, and close BOTH (asyncio TLS transports cannot half-close;
   SPDY and WebSocket carry their own close frames, so nothing is lost).

Why this needs aiohttp internals, and why they are all in this module: aiohttp's HTTP parser only
switches a connection to "upgraded" for `Upgrade: websocket` (C parser: `ALLOWED_UPGRADES`), so after a
SPDY 101 the client's binary frames would be fed to the HTTP parser and the relay would hang. The
takeover uses what `aiohttp.web.WebSocketResponse` itself uses: `RequestHandler.set_parser()`, called
BEFORE the 101 is sent, routes every later byte of the connection (including bytes the parser had
already buffered after a WebSocket upgrade) to our sink; `keep_alive(False)` ends the connection with
the handler. The raw upstream head is written by overriding `StreamResponse._write_headers`.
Checked against aiohttp 3.14.5 (the pinned version) on asyncio and uvloop by
tests/unit/test_proxy_upgrade.py — the contract test to run on every aiohttp upgrade.

Bytes are relayed in the transports' data callbacks, with no task switch per chunk (per-chunk cost is
what bounds port-forward throughput). Back-pressure: when the upstream's write buffer fills, reading
from the client transport pauses until it drains, and vice versa (the client side's drain is
observed through aiohttp's writer). Only connect and response-head timeouts apply: an established
exec or port-forward may be idle for hours (the kubelet owns that timeout); TCP keepalive detects
dead peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .headers import downstream_headers
from .status import status_response

__all__ = ["UpgradeError", "UpgradeTarget", "parse_response_head", "relay", "request_head"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
HEAD_TIMEOUT = 30.0
MAX_HEAD = 64 * 1024
MAX_DECLINED_BODY = 1024 * 1024
MAX_UPGRADE_REQUEST_BODY = 64 * 1024
_PENDING_LIMIT = 256 * 1024


class UpgradeError(Exception):
    """The upstream's answer to an upgrade request could not be read."""


class _Upstream(asyncio.Protocol):
    """The upstream connection. Until the switch it buffers what arrives (the response head, or a
    declined answer's body); after it, every byte goes straight to `sink` (the client transport).

    A protocol rather than asyncio streams so that a relayed chunk costs one callback and one write,
    with no task switch in between: port-forward throughput is bounded by per-chunk overhead, since
    kubectl sends many small WebSocket/SPDY frames.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.done: asyncio.Future[None] = loop.create_future()
        self._changed: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], None] | None = None
        self.on_pause_writing: Callable[[], None] | None = None
        self.on_resume_writing: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink(data)
            return
        self.buffer += data
        self._notify()

    def eof_received(self) -> bool:
        self.eof = True
        self._notify()
        return False  # close: there is no half-close to relay

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._notify()
        if not self.done.done():
            self.done.set_result(None)
        if self.on_resume_writing is not None:
            self.on_resume_writing()  # never leave the client paused behind a dead upstream

    def pause_writing(self) -> None:
        if self.on_pause_writing is not None:
            self.on_pause_writing()

    def resume_writing(self) -> None:
        if self.on_resume_writing is not None:
            self.on_resume_writing()

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    async def wait_until(self, ready: Callable[[], bool]) -> None:
        """Until `ready()` holds or the upstream has ended."""
        while not ready() and not self.eof:
            self._changed = self._loop.create_future()
            try:
                await self._changed
            finally:
                self._changed = None

    def splice_to(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink
        if self.buffer:
            data, self.buffer = bytes(self.buffer), bytearray()
            sink(data)


@dataclass(frozen=True)
class UpgradeTarget:
    """Where an upgrade connection is dialled: host, port, TLS context and the name to verify."""

    host: str
    port: int
    ssl: ssl.SSLContext | None = None
    server_hostname: str | None = None
    host_header: str = ""

    async def connect(self) -> _Upstream:
        loop = asyncio.get_running_loop()
        _, upstream = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Upstream(loop),
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=(self.server_hostname or self.host) if self.ssl is not None else None,
            ),
            CONNECT_TIMEOUT,
        )
        assert upstream.transport is not None
        sock = upstream.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return upstream


def _checked(value: str, what: str) -> str:
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"{what} contains a line break")
    return value


def request_head(
    method: str, path_qs: str, host_header: str, headers: Iterable[tuple[str, str]], body_length: int
) -> bytes:
    lines = [f"{_checked(method, 'method')} {_checked(path_qs, 'path')} HTTP/1.1", f"Host: {host_header}"]
    for name, value in headers:
        if name.lower() in ("host", "content-length"):
            continue
        lines.append(f"{_checked(name, 'header name')}: {_checked(value, 'header value')}")
    if body_length:
        lines.append(f"Content-Length: {body_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_response_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    """Status code, reason and headers of a raw HTTP/1.x response head (ending in CRLF CRLF)."""
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise UpgradeError(f"malformed status line from upstream: {status_line[:100]!r}")
    reason = parts[2] if len(parts) > 2 else ""
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise UpgradeError(f"malformed header line from upstream: {line[:100]!r}")
        headers.append((name, value.strip()))
    return int(parts[1]), reason, headers


def _dechunk(data: bytes) -> bytes | None:
    """The body of a complete chunked message, or None while it is incomplete."""
    body = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return None
        size = int(data[pos:end].split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return bytes(body)
        start = end + 2
        if len(data) < start + size + 2:
            return None
        body += data[start : start + size]
        pos = start + size + 2


async def _read_body(upstream: _Upstream, headers: list[tuple[str, str]]) -> bytes:
    """The body of a non-101 answer: Content-Length, chunked, or up to EOF; at most 1 MiB."""
    lowered = {name.lower(): value for name, value in headers}
    buffer = upstream.buffer
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        await upstream.wait_until(
            lambda: _dechunk(bytes(buffer)) is not None or len(buffer) > MAX_DECLINED_BODY
        )
        body = _dechunk(bytes(buffer))
        if body is None:
            raise UpgradeError("incomplete chunked answer from the upstream")
        return body
    if "content-length" in lowered:
        length = min(int(lowered["content-length"]), MAX_DECLINED_BODY)
        await upstream.wait_until(lambda: len(buffer) >= length)
        if len(buffer) < length:
            raise UpgradeError("the upstream closed the connection mid-answer")
        return bytes(buffer[:length])
    await upstream.wait_until(lambda: len(buffer) > MAX_DECLINED_BODY)
    return bytes(buffer[:MAX_DECLINED_BODY])


class _ClientSide:
    """Stands in for aiohttp's WebSocket payload parser: every byte the client sends, unparsed, written
    straight to the upstream transport (buffered only until the upstream is attached).

    Back-pressure goes to the client *transport* itself. It must not go through
    `RequestHandler.pause_reading()`: for a SPDY upgrade aiohttp's HTTP parser still believes it owns
    the connection, and the C parser asserts when asked to pause from outside its own callbacks (found
    by this module's contract test on uvloop).
    """

    def __init__(self, client: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._upstream: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._paused = False
        self.ended: asyncio.Future[None] = loop.create_future()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._upstream is not None:
            self._upstream.write(data)
        elif data:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size > _PENDING_LIMIT:
                self.pause()
        return False, b""

    def feed_eof(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def attach(self, upstream: asyncio.Transport) -> None:
        self._upstream = upstream
        for data in self._pending:
            upstream.write(data)
        self._pending.clear()
        self.resume()

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._client.pause_reading()

    def resume(self) -> None:
        if self._paused and not self._client.is_closing():
            self._paused = False
            self._client.resume_reading()


class _RawHeadResponse(web.StreamResponse):
    """A 101 whose head on the wire is the upstream's, byte for byte (status line, headers, order)."""

    def __init__(self, raw_head: bytes, reason: str) -> None:
        super().__init__(status=101, reason=reason or "Switching Protocols")
        self._raw_head = raw_head

    async def _write_headers(self) -> None:
        writer = self._payload_writer
        assert writer is not None  # set by prepare() just before this call
        await writer.write(self._raw_head)


async def relay(
    request: web.BaseRequest,
    target: UpgradeTarget,
    *,
    method: str,
    path_qs: str,
    headers: Iterable[tuple[str, str]],
) -> web.StreamResponse:
    """Forward an upgrade request to `target` and, on 101, splice the two connections.

    `headers` are the complete upstream request headers (credentials included) except Host and
    Content-Length, which are set here. Returns the response aiohttp should finish: the declined
    answer, or the already-sent 101 once both directions have ended.
    """
    body = b""
    if request.body_exists:
        # SPDY upgrades are POSTs with an empty body; anything bigger is not an upgrade we know.
        body = await request.content.read(MAX_UPGRADE_REQUEST_BODY + 1)
        if len(body) > MAX_UPGRADE_REQUEST_BODY:
            return status_response(413, "upgrade request body too large", close=True)
    head_out = request_head(method, path_qs, target.host_header or target.host, headers, len(body))
    upstream = await target.connect()
    assert upstream.transport is not None
    try:
        upstream.transport.write(head_out + body)
        buffer = upstream.buffer
        await asyncio.wait_for(
            upstream.wait_until(lambda: b"\r\n\r\n" in buffer or len(buffer) > MAX_HEAD), HEAD_TIMEOUT
        )
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            raise UpgradeError(
                "upstream response head too large"
                if len(buffer) > MAX_HEAD
                else "upstream closed before answering"
            )
        head = bytes(buffer[: end + 4])
        del buffer[: end + 4]
        status, reason, upstream_headers = parse_response_head(head)
        if status != 101:
            return await _declined(upstream, status, reason, upstream_headers)
        return await _splice(request, upstream, head, reason)
    finally:
        upstream.transport.close()


async def _declined(
    upstream: _Upstream, status: int, reason: str, upstream_headers: list[tuple[str, str]]
) -> web.StreamResponse:
    """The upstream refused the upgrade: its answer goes to the client, then the connection closes."""
    try:
        body = await asyncio.wait_for(_read_body(upstream, upstream_headers), HEAD_TIMEOUT)
    except ValueError as exc:
        raise UpgradeError(f"could not read the upstream's answer: {exc!r}") from exc
    if status < 400:
        # Neither a switch nor an error: a redirect or a plain 200 would make the client believe the
        # stream works. Kubernetes' proxy treats it as an error too.
        status, reason = 502, "Bad Gateway"
        body = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        body += b'"message":"invalid upgrade response from the upstream","reason":"InternalError","code":502}'
        upstream_headers = [("Content-Type", "application/json")]
    headers = downstream_headers(upstream_headers)
    headers.popall("Content-Length", None)
    response = web.Response(status=status, reason=reason or None, body=body, headers=CIMultiDict(headers))
    response.force_close()
    return response


async def _splice(
    request: web.BaseRequest, upstream: _Upstream, head: bytes, reason: str
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    protocol, client = request.protocol, request.transport
    up = upstream.transport
    if client is None or up is None:
        raise UpgradeError("a connection closed before the switch")
    client_side = _ClientSide(client, loop)
    # Before the 101 leaves: from now on every byte of the client connection goes to `client_side`.
    protocol.set_parser(client_side)  # type: ignore[arg-type]  # duck-typed like WebSocketReader, which is what set_parser is annotated with
    protocol.keep_alive(False)
    response = _RawHeadResponse(head, reason)
    response.force_close()
    writer = await response.prepare(request)
    assert writer is not None

    # client → upstream: written in the client's data callback; paused while the upstream is full.
    upstream.on_pause_writing = client_side.pause
    upstream.on_resume_writing = client_side.resume
    client_side.attach(up)

    # upstream → client: the same, in the upstream's data callback. When the client falls behind,
    # reading from the upstream stops until aiohttp's writer reports the client transport drained.
    draining: set[asyncio.Task[None]] = set()
    high_water = client.get_write_buffer_limits()[1]

    async def resume_when_drained() -> None:
        with contextlib.suppress(OSError, aiohttp.ClientError):
            await writer.drain()
        if not up.is_closing():
            up.resume_reading()

    def to_client(data: bytes) -> None:
        if client.is_closing():
            return
        client.write(data)
        if not draining and client.get_write_buffer_size() > high_water:
            up.pause_reading()
            task = loop.create_task(resume_when_drained(), name="upgrade-client-drain")
            draining.add(task)
            task.add_done_callback(draining.discard)

    upstream.splice_to(to_client)
    try:
        await asyncio.wait({upstream.done, client_side.ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in list(draining):
            task.cancel()
        await asyncio.gather(*draining, return_exceptions=True)
        up.close()
        # Close the client side too: a half-open stream would leave kubectl waiting forever.
        client.close()
    return response
