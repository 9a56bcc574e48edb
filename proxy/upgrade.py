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

Back-pressure: client → upstream through `_ClientBytes`, which pauses reading from the client while
its buffer is full, then `drain()` on the upstream; upstream → client with
`StreamResponse.write`, which drains. Only connect and response-head timeouts apply: an established
exec or port-forward may be idle for hours (the kubelet owns that timeout); TCP keepalive detects
dead peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .headers import downstream_headers
from .status import status_response

__all__ = ["UpgradeTarget", "parse_response_head", "relay"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
HEAD_TIMEOUT = 30.0
MAX_HEAD = 64 * 1024
MAX_DECLINED_BODY = 1024 * 1024
MAX_UPGRADE_REQUEST_BODY = 64 * 1024
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class UpgradeTarget:
    """Where an upgrade connection is dialled: host, port, TLS context and the name to verify."""

    host: str
    port: int
    ssl: ssl.SSLContext | None = None
    server_hostname: str | None = None
    host_header: str = ""

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=(self.server_hostname or self.host) if self.ssl is not None else None,
                limit=MAX_HEAD,
            ),
            CONNECT_TIMEOUT,
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return reader, writer


class UpgradeError(Exception):
    """The upstream's answer to an upgrade request could not be read."""


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


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    """The body of a non-101 answer: Content-Length, chunked, or up to EOF; at most 1 MiB."""
    lowered = {name.lower(): value for name, value in headers}
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        body = bytearray()
        while len(body) <= MAX_DECLINED_BODY:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return bytes(body[:MAX_DECLINED_BODY])
    if "content-length" in lowered:
        length = int(lowered["content-length"])
        return await reader.readexactly(min(length, MAX_DECLINED_BODY))
    return await reader.read(MAX_DECLINED_BODY)


class _ClientBytes:
    """Stands in for aiohttp's WebSocket payload parser: every byte the client sends, unparsed.

    It buffers what arrives and pauses the client *transport* itself above a high-water mark. It must
    not go through `RequestHandler.pause_reading()` (what `aiohttp.StreamReader` would do): for a SPDY
    upgrade aiohttp's HTTP parser still believes it owns the connection, and the C parser asserts when
    asked to pause from outside its own callbacks (found by this module's contract test on uvloop).
    """

    def __init__(self, transport: asyncio.BaseTransport, *, high_water: int = _CHUNK) -> None:
        self._transport = transport
        self._high_water = high_water
        self._buffer: list[bytes] = []
        self._size = 0
        self._eof = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self._buffer.append(data)
            self._size += len(data)
            self._wake()
            if self._size > self._high_water and not self._paused and isinstance(
                self._transport, asyncio.ReadTransport
            ):
                self._paused = True
                self._transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    async def read(self) -> bytes:
        """Everything buffered so far (b"" at EOF); resumes the client when the buffer empties."""
        while not self._buffer:
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        if self._paused and not self._transport.is_closing():
            self._paused = False
            assert isinstance(self._transport, asyncio.ReadTransport)
            self._transport.resume_reading()
        return chunk


class _RawHeadResponse(web.StreamResponse):
    """A 101 whose head on the wire is the upstream's, byte for byte (status line, headers, order)."""

    def __init__(self, raw_head: bytes, reason: str) -> None:
        super().__init__(status=101, reason=reason or "Switching Protocols")
        self._raw_head = raw_head

    async def _write_headers(self) -> None:
        writer = self._payload_writer
        assert writer is not None  # set by prepare() just before this call
        await writer.write(self._raw_head)


async def _pump(read: Callable[[], Awaitable[bytes]], write: Callable[[bytes], Awaitable[None]]) -> None:
    # A peer going away ends the splice like an orderly EOF: both sides are closed by the caller.
    with contextlib.suppress(OSError, aiohttp.ClientError, asyncio.IncompleteReadError):
        while chunk := await read():
            await write(chunk)


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
    reader, writer = await target.connect()
    spliced = False
    try:
        writer.write(head_out + body)
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError as exc:
            raise UpgradeError("upstream response head too large") from exc
        except asyncio.IncompleteReadError as exc:
            raise UpgradeError("upstream closed the connection before answering") from exc
        status, reason, upstream_headers = parse_response_head(head)
        if status != 101:
            return await _declined(reader, status, reason, upstream_headers)
        spliced = True
        return await _splice(request, reader, writer, head, reason)
    finally:
        if not spliced:
            writer.close()


async def _declined(
    reader: asyncio.StreamReader, status: int, reason: str, upstream_headers: list[tuple[str, str]]
) -> web.StreamResponse:
    """The upstream refused the upgrade: its answer goes to the client, then the connection closes."""
    try:
        body = await asyncio.wait_for(_read_body(reader, upstream_headers), HEAD_TIMEOUT)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
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
    request: web.BaseRequest,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head: bytes,
    reason: str,
) -> web.StreamResponse:
    protocol = request.protocol
    transport = request.transport
    if transport is None:
        raise UpgradeError("the client connection closed before the switch")
    downstream = _ClientBytes(transport)
    # Before the 101 leaves: from now on every byte of the client connection goes to `downstream`.
    protocol.set_parser(downstream)  # type: ignore[arg-type]  # duck-typed like WebSocketReader, which is what set_parser is annotated with
    protocol.keep_alive(False)
    response = _RawHeadResponse(head, reason)
    response.force_close()
    await response.prepare(request)

    async def to_upstream(chunk: bytes) -> None:
        writer.write(chunk)
        await writer.drain()

    tasks = {
        asyncio.create_task(_pump(downstream.read, to_upstream), name="upgrade-client-to-upstream"),
        asyncio.create_task(
            _pump(lambda: reader.read(_CHUNK), response.write), name="upgrade-upstream-to-client"
        ),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        # Close the client side too: a half-open stream would leave kubectl waiting forever.
        transport = request.transport
        if transport is not None:
            transport.close()
    return response
