"""The one HTTP choke point between vcluster-py and a Kubernetes API server.

Why our own client on aiohttp rather than kubernetes-asyncio's generated API: the syncer handles
objects as plain dicts (the generated models are slow and silently drop fields they do not know, which
corrupts read-modify-write), it needs watches with bookmarks and an explicit line splitter (aiohttp's
`readline` refuses lines over 128 KiB, and one big Secret or ConfigMap is such a line), and every call
must go through the same timeout, retry, rate-limit and metrics policy. Everything that talks to an API
server — syncer, reflectors, proxy, control plane — goes through `KubeClient.request` or `KubeClient.watch`.

Failure handling, in one place:

* Timeouts are always explicit (`aiohttp.ClientTimeout`); aiohttp's default is none at all.
* Retries with exponential back-off and jitter, honouring `Retry-After`, on connection errors, 429 and
  5xx — but only where repeating the request cannot do something twice: idempotent verbs always;
  POST only when the request provably was not processed (the connection was never established, or the
  server answered 429, or a 5xx carrying `Retry-After`, which is how the API server says "not now").
* A client-side token bucket (`qps`/`burst`) so that a resync storm cannot flood an API server that
  serves other tenants.
* Errors become `ApiError` (an HTTP answer, with the decoded `Status`) or `TransportError` (no answer),
  so callers never need to import aiohttp.

Credentials are read from a kubeconfig by our own small loader (pyyaml), not kubernetes-asyncio's: we
need the pieces themselves (`server`, `ssl_context`, `auth_headers()`) because the proxy reuses them for
raw upgrade connections, and inline key material is loaded straight into the SSL context instead of
lingering in temporary files until the process exits. Token files (`tokenFile`, the in-cluster
ServiceAccount token) are re-read every minute, because projected tokens rotate. Exec and
auth-provider plugins are not supported: our clusters authenticate with certificates or tokens.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import logging
import os
import random
import ssl
import tempfile
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp
import orjson
import yaml
from yarl import URL

from syncer.kube import metrics
from syncer.kube.resources import ResourceType

__all__ = [
    "ApiError",
    "JsonObj",
    "KubeClient",
    "KubeConfigError",
    "KubeError",
    "PatchType",
    "TokenBucket",
    "TransportError",
]

log = logging.getLogger(__name__)

JsonObj = dict[str, Any]
"""A Kubernetes object (or any JSON object) as decoded from the wire: the syncer's only object type."""

_JsonList = builtins.list[JsonObj]  # `list` is shadowed inside KubeClient by its method of that name.

PatchType = Literal["merge", "strategic", "json", "apply"]
_PATCH_CONTENT_TYPES: Mapping[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
_VERB_BY_METHOD: Mapping[str, str] = {
    "GET": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}

IN_CLUSTER_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_PERIOD = 60.0
"""Seconds a token read from a file is trusted before the file is read again (client-go does the same):
kubelet rotates projected ServiceAccount tokens well before they expire, so a minute is always enough."""


# ----------------------------------------------------------------------------------------------- errors


class KubeError(Exception):
    """Anything that went wrong talking to an API server."""


class TransportError(KubeError):
    """No HTTP answer: connection refused or reset, TLS failure, timeout, stream cut — after retries."""


class KubeConfigError(KubeError, ValueError):
    """A kubeconfig or in-cluster environment we cannot use."""


class ApiError(KubeError):
    """The API server answered with an error status; `body` is its decoded `Status` object (or {})."""

    def __init__(self, status: int, reason: str, message: str, body: JsonObj | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body: JsonObj = body if body is not None else {}

    @classmethod
    def from_status(cls, status: Mapping[str, Any], *, http_status: int | None = None) -> ApiError:
        """Build from a `Status` object: an error response body or the object of an ERROR watch event."""
        code = status.get("code")
        return cls(
            code if isinstance(code, int) and code else (http_status or 500),
            str(status.get("reason") or ""),
            str(status.get("message") or ""),
            dict(status),
        )

    @classmethod
    def from_response(cls, http_status: int, payload: bytes) -> ApiError:
        try:
            decoded = orjson.loads(payload) if payload else {}
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and decoded.get("kind") == "Status":
            return cls.from_status(decoded, http_status=http_status)
        text = payload.decode("utf-8", "replace").strip()[:1000]
        return cls(http_status, "", text, decoded if isinstance(decoded, dict) else {})

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def conflict(self) -> bool:
        """409 that is not AlreadyExists: a stale resourceVersion or a failed precondition."""
        return self.status == 409 and self.reason != "AlreadyExists"

    @property
    def gone(self) -> bool:
        """410: the resourceVersion (or continue token) is older than what the server still keeps."""
        return self.status == 410

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def unauthorized(self) -> bool:
        return self.status == 401

    @property
    def invalid(self) -> bool:
        return self.status == 422

    @property
    def retry_after_seconds(self) -> float | None:
        """The server's `details.retryAfterSeconds` (429s and "storage is (re)initializing" carry it)."""
        details = self.body.get("details")
        value = details.get("retryAfterSeconds") if isinstance(details, dict) else None
        return float(value) if isinstance(value, int | float) and value > 0 else None


# -------------------------------------------------------------------------------------------- rate limit


class TokenBucket:
    """A token bucket: `rate` tokens per second, at most `burst` saved up; rate <= 0 means unlimited.

    Callers *reserve* a token, possibly driving the balance negative, and wait until it would have been
    there. Waiters are therefore served in arrival order without a lock or a background refill task.
    `reserve` is pure bookkeeping (testable without a loop); `acquire` does the waiting.
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    def reserve(self) -> float:
        """Take one token; return how many seconds the caller must wait before using it."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


# ------------------------------------------------------------------------------------------ credentials


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=False)
    except ValueError as exc:
        raise KubeConfigError(f"{what} is not valid base64") from exc


def _named(entries: Any, name: str, what: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            inner = entry.get(what)
            return inner if isinstance(inner, dict) else {}
    raise KubeConfigError(f"kubeconfig has no {what} named {name!r}")


def _pem_or_file(section: Mapping[str, Any], key: str, base_dir: Path) -> tuple[bytes | None, Path | None]:
    """`<key>-data` (inline, base64) wins over `<key>` (a file path, relative to the kubeconfig)."""
    data = section.get(f"{key}-data")
    if data:
        return _b64decode(str(data), f"{key}-data"), None
    path = section.get(key)
    if path:
        return None, (base_dir / os.path.expanduser(str(path)))
    return None, None


def build_ssl_context(
    *,
    ca_pem: bytes | None = None,
    ca_file: Path | None = None,
    insecure: bool = False,
    cert_pem: bytes | None = None,
    cert_file: Path | None = None,
    key_pem: bytes | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """A client TLS context for an API server.

    With a CA given, only that CA is trusted (never the system store: a cluster CA is private). Inline
    client key material has to pass through files — `ssl` can only load chains from paths — so it goes
    into a private temporary directory that is removed as soon as the context holds the key.
    ALPN offers HTTP/1.1 only: aiohttp speaks nothing else, and the proxy's upgrade connections
    (exec, port-forward) must not be negotiated to HTTP/2.
    """
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=str(ca_file) if ca_file else None,
        cadata=ca_pem.decode("ascii") if ca_pem else None,
    )
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    if (cert_pem or cert_file) and not (key_pem or key_file):
        raise KubeConfigError("client certificate given without its key")
    if cert_file and key_file:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    elif cert_pem or cert_file:
        with tempfile.TemporaryDirectory(prefix="vcluster-py-tls-") as tmp:  # mode 0700
            cert_path = cert_file or Path(tmp, "tls.crt")
            key_path = key_file or Path(tmp, "tls.key")
            for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
                if data is not None:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
            ctx.load_cert_chain(str(cert_path), str(key_path))
    return ctx


# ---------------------------------------------------------------------------------------------- helpers


def _encode_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Query parameters as strings: booleans the way the API server spells them, None dropped."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _code_class(status: int) -> str:
    return f"{status // 100}xx"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), clamped to [0, 60]."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), 60.0)


def _decode(payload: bytes) -> JsonObj:
    if not payload:
        return {}
    try:
        decoded = orjson.loads(payload)
    except ValueError as exc:
        raise KubeError(f"undecodable answer from the API server: {payload[:200]!r}") from exc
    if not isinstance(decoded, dict):
        raise KubeError(f"expected a JSON object from the API server, got {type(decoded).__name__}")
    return decoded


def _decode_event(line: bytes, path: str) -> JsonObj:
    """A watch line that is not a JSON object means a garbled stream: reconnecting is the only cure."""
    try:
        return _decode(line)
    except KubeError as exc:
        raise TransportError(f"watch {path}: {exc}") from exc


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


class _LineSplitter:
    """Splits a byte stream into lines without any line-length limit.

    Each chunk is searched for newlines only from where the previous chunk ended, so a multi-megabyte
    event arriving in many small chunks costs linear, not quadratic, time.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> builtins.list[bytes]:
        scan = len(self._buf)
        self._buf += chunk
        lines: builtins.list[bytes] = []
        start = 0
        while (newline := self._buf.find(b"\n", scan)) >= 0:
            lines.append(bytes(self._buf[start:newline]))
            start = scan = newline + 1
        if start:
            del self._buf[:start]
        return lines

    def tail(self) -> bytes:
        rest, self._buf = bytes(self._buf), bytearray()
        return rest


# ----------------------------------------------------------------------------------------------- client


class KubeClient:
    """An API server connection: credentials, one aiohttp session, policy, and helpers on plain dicts.

    Build one per cluster (`from_kubeconfig`, `in_cluster`) and share it; `name` ("host", "virtual")
    becomes the `cluster` label of every metric. The aiohttp session is created on first use inside the
    running loop and has no connection-count limit, so long-lived watches can never starve short
    requests of connections (each watch holds one HTTP/1.1 connection for its lifetime).
    """

    def __init__(
        self,
        server: str,
        *,
        name: str = "host",
        ssl_context: ssl.SSLContext | None = None,
        tls_server_name: str | None = None,
        token: str | None = None,
        token_file: Path | None = None,
        namespace: str | None = None,
        proxy: str | None = None,
        qps: float = 50.0,
        burst: int = 100,
        request_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 5,
    ) -> None:
        self.server = server.rstrip("/")
        self.name = name
        self.ssl_context = ssl_context
        self.tls_server_name = tls_server_name
        self.namespace = namespace
        """The namespace of the kubeconfig context / the pod (in-cluster), if any; informational."""
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self._token = token
        self._token_file = token_file
        self._token_read_at = -float("inf")
        self._proxy = proxy
        self._limiter = TokenBucket(qps, burst)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    # --- construction

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | os.PathLike[str],
        *,
        context: str | None = None,
        name: str = "host",
        qps: float = 50.0,
        burst: int = 100,
        **kwargs: Any,
    ) -> KubeClient:
        """A client for a context (default: current-context) of a kubeconfig file."""
        path = Path(path)
        try:
            config = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
        return cls.from_kubeconfig_dict(
            config, context=context, name=name, qps=qps, burst=burst, base_dir=path.parent, **kwargs
        )

    @classmethod
    def from_kubeconfig_dict(
        cls,
        config: Any,
        *,
        context: str | None = None,
        name: str = "host",
        qps: float = 50.0,
        burst: int = 100,
        base_dir: Path | None = None,
        **kwargs: Any,
    ) -> KubeClient:
        """Same as `from_kubeconfig` for an already parsed document (e.g. from a Secret).

        Relative file paths in it are resolved against `base_dir` (the kubeconfig's directory).
        """
        if not isinstance(config, dict):
            raise KubeConfigError("kubeconfig is not a mapping")
        base = base_dir or Path.cwd()
        context_name = context or config.get("current-context")
        if not context_name:
            raise KubeConfigError("kubeconfig has no current-context and no context was given")
        ctx = _named(config.get("contexts"), str(context_name), "context")
        cluster = _named(config.get("clusters"), str(ctx.get("cluster")), "cluster")
        user = _named(config.get("users"), str(ctx["user"]), "user") if ctx.get("user") else {}
        for unsupported in ("exec", "auth-provider"):
            if user.get(unsupported):
                raise KubeConfigError(
                    f"kubeconfig user uses {unsupported!r}, which vcluster-py does not support"
                )
        server = cluster.get("server")
        if not server:
            raise KubeConfigError(f"cluster of context {context_name!r} has no server")
        ssl_context = None
        if str(server).startswith("https://"):
            ca_pem, ca_file = _pem_or_file(cluster, "certificate-authority", base)
            cert_pem, cert_file = _pem_or_file(user, "client-certificate", base)
            key_pem, key_file = _pem_or_file(user, "client-key", base)
            ssl_context = build_ssl_context(
                ca_pem=ca_pem,
                ca_file=ca_file,
                insecure=bool(cluster.get("insecure-skip-tls-verify")),
                cert_pem=cert_pem,
                cert_file=cert_file,
                key_pem=key_pem,
                key_file=key_file,
            )
        token_file = Path(base, os.path.expanduser(str(user["tokenFile"]))) if user.get("tokenFile") else None
        return cls(
            str(server),
            name=name,
            ssl_context=ssl_context,
            tls_server_name=cluster.get("tls-server-name"),
            token=str(user["token"]) if user.get("token") else None,
            token_file=None if user.get("token") else token_file,
            namespace=ctx.get("namespace"),
            proxy=cluster.get("proxy-url"),
            qps=qps,
            burst=burst,
            **kwargs,
        )

    @classmethod
    def in_cluster(
        cls,
        *,
        name: str = "host",
        qps: float = 50.0,
        burst: int = 100,
        sa_dir: Path = IN_CLUSTER_SA_DIR,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> KubeClient:
        """A client for the cluster this pod runs in, with its ServiceAccount (token re-read on rotation)."""
        env = os.environ if environ is None else environ
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise KubeConfigError("KUBERNETES_SERVICE_HOST/PORT are not set: not running in a pod")
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        token_file, ca_file = sa_dir / "token", sa_dir / "ca.crt"
        if not token_file.is_file() or not ca_file.is_file():
            raise KubeConfigError(f"no ServiceAccount token or ca.crt in {sa_dir}")
        try:
            namespace: str | None = (sa_dir / "namespace").read_text().strip() or None
        except OSError:
            namespace = None
        return cls(
            f"https://{host}:{port}",
            name=name,
            ssl_context=build_ssl_context(ca_file=ca_file),
            token_file=token_file,
            namespace=namespace,
            qps=qps,
            burst=burst,
            **kwargs,
        )

    # --- lifecycle

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError(f"KubeClient {self.name!r} is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, ssl=self.ssl_context if self.ssl_context is not None else True
            )
            # trust_env=False: HTTP(S)_PROXY meant for the outside world must not capture API traffic;
            # a kubeconfig `proxy-url` is honoured explicitly instead.
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    # --- credentials

    def auth_headers(self) -> dict[str, str]:
        """`Authorization` for this cluster (empty with client-certificate auth), current as of now."""
        token = self._current_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _current_token(self) -> str | None:
        if self._token_file is None:
            return self._token
        now = time.monotonic()
        if now - self._token_read_at >= TOKEN_REREAD_PERIOD:
            try:
                token = self._token_file.read_text().strip()
            except OSError as exc:
                # Mid-rotation the file can be briefly missing; the previous token is still valid.
                log.warning("Could not re-read token file", extra={"cluster": self.name, "err": repr(exc)})
            else:
                if token:
                    self._token = token
                    self._token_read_at = now
        return self._token

    def url(self, path: str) -> URL:
        """The absolute URL of an API path; the path must already be quoted (`ResourceType.path` is)."""
        return URL(self.server + path, encoded=True)

    # --- the choke point

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        # Per HTTP attempt, not for the whole call (retries included): asyncio.timeout cannot say that.
        timeout: float | aiohttp.ClientTimeout | None = None,  # noqa: ASYNC109
    ) -> JsonObj:
        """Send one API request (retried as the module docstring says) and return the decoded JSON.

        `body` is JSON-encoded (JSON is valid YAML, so it also serves `application/apply-patch+yaml`).
        Raises `ApiError` for an error status and `TransportError` when no answer could be had.
        """
        method = method.upper()
        return await self._request(
            method,
            path,
            verb=_VERB_BY_METHOD.get(method, method.lower()),
            params=params,
            body=body,
            content_type=content_type,
            headers=headers,
            timeout=timeout,
        )

    def _timeout(self, timeout: float | aiohttp.ClientTimeout | None) -> aiohttp.ClientTimeout:
        if isinstance(timeout, aiohttp.ClientTimeout):
            return timeout
        return aiohttp.ClientTimeout(
            total=timeout if timeout is not None else self.request_timeout,
            connect=self.connect_timeout,
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential from 0.2 s, capped at 10 s, with "equal jitter" (half fixed, half random)."""
        ceiling = min(10.0, 0.2 * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,  # noqa: ASYNC109 (per attempt, see request)
    ) -> JsonObj:
        data = None if body is None else orjson.dumps(body)
        query = _encode_params(params)
        url = self.url(path)
        client_timeout = self._timeout(timeout)
        idempotent = method in _IDEMPOTENT
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            request_headers = {"Accept": "application/json", **self.auth_headers()}
            if data is not None:
                request_headers["Content-Type"] = content_type
            request_headers.update(headers or {})
            await self._limiter.acquire()
            started = loop.time()
            try:
                async with self._http().request(
                    method,
                    url,
                    params=query,
                    data=data,
                    headers=request_headers,
                    timeout=client_timeout,
                    server_hostname=self.tls_server_name,
                    proxy=self._proxy,
                ) as resp:
                    payload = await resp.read()
                    status = resp.status
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                metrics.KUBE_REQUESTS.labels(self.name, verb, "error").inc()
                metrics.KUBE_REQUEST_DURATION.labels(self.name, verb).observe(loop.time() - started)
                # A connection that was never established cannot have reached the server: safe for POST.
                # A certificate error, on the other hand, will not heal by itself.
                never_sent = isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(
                    exc, aiohttp.ClientSSLError
                )
                if attempt >= self.max_retries or not (idempotent or never_sent):
                    raise TransportError(f"{method} {path}: {exc!r}") from exc
                delay = self._backoff(attempt)
                log.debug(
                    "Retrying request after connection error",
                    extra={
                        "cluster": self.name,
                        "verb": verb,
                        "path": path,
                        "err": repr(exc),
                        "delay": delay,
                    },
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue

            metrics.KUBE_REQUESTS.labels(self.name, verb, _code_class(status)).inc()
            metrics.KUBE_REQUEST_DURATION.labels(self.name, verb).observe(loop.time() - started)
            if status < 400:
                return _decode(payload)
            if status == 401:
                self._token_read_at = -float("inf")  # a rotated token file is picked up on the next call
            transient = status == 429 or (status >= 500 and status != 501)
            # 429, and 5xx with Retry-After, mean "not processed, come back later": safe even for POST.
            not_processed = status == 429 or retry_after is not None
            if transient and (idempotent or not_processed) and attempt < self.max_retries:
                delay = retry_after if retry_after is not None else self._backoff(attempt)
                log.debug(
                    "Retrying request after server answer",
                    extra={
                        "cluster": self.name,
                        "verb": verb,
                        "path": path,
                        "status": status,
                        "delay": delay,
                    },
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            raise ApiError.from_response(status, payload)

    # --- typed helpers on dicts

    def _count_write(self, rt: ResourceType, verb: str, subresource: str | None = None) -> None:
        kind = f"{rt.kind}/{subresource}" if subresource else rt.kind
        metrics.WRITES.labels(self.name, kind, verb).inc()

    @staticmethod
    def _namespace_of(rt: ResourceType, obj: Mapping[str, Any], namespace: str | None) -> str | None:
        if not rt.namespaced:
            return None
        namespace = namespace or _metadata(obj).get("namespace")
        if not namespace:
            raise ValueError(f"{rt.resource} is namespaced: give a namespace or set metadata.namespace")
        return str(namespace)

    @staticmethod
    def _name_of(obj: Mapping[str, Any]) -> str:
        name = _metadata(obj).get("name")
        if not name:
            raise ValueError("object has no metadata.name")
        return str(name)

    async def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> JsonObj:
        return await self._request("GET", rt.path(namespace, name), verb="get")

    async def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        resource_version: str | None = None,
    ) -> JsonObj:
        """All matching objects, following `continue` pages of `limit` items.

        Returns `{"apiVersion", "kind", "items", "metadata": {"resourceVersion"}}`. Items get their
        `apiVersion`/`kind` filled in: the API server omits them in lists of built-in types but sends
        them in watch events, and a store fed by both must not hold two shapes of the same object.
        If a continue token expires mid-way (410 after etcd compaction) the pages already read belong to
        a snapshot that no longer exists, so the list starts over in one unpaginated request.
        """
        items: _JsonList = []
        token: str | None = None
        while True:
            params = {
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                "limit": limit,
                "continue": token,
                # The server refuses resourceVersion together with continue: the token pins the snapshot.
                "resourceVersion": resource_version if token is None else None,
            }
            try:
                page = await self._request("GET", rt.path(namespace), verb="list", params=params)
            except ApiError as exc:
                if not (exc.gone and token is not None):
                    raise
                log.info(
                    "Restarting list after its continue token expired",
                    extra={"cluster": self.name, "resource": rt.resource, "namespace": namespace},
                )
                items, token, limit = [], None, None
                continue
            for item in page.get("items") or []:
                item.setdefault("apiVersion", rt.api_version)
                item.setdefault("kind", rt.kind)
                items.append(item)
            meta = _metadata(page)
            token = meta.get("continue") or None
            if token is None:
                return {
                    "apiVersion": rt.api_version,
                    "kind": f"{rt.kind}List",
                    "items": items,
                    "metadata": {"resourceVersion": str(meta.get("resourceVersion", ""))},
                }

    async def create(
        self, rt: ResourceType, obj: JsonObj, namespace: str | None = None, *, dry_run: bool = False
    ) -> JsonObj:
        ns = self._namespace_of(rt, obj, namespace)
        created = await self._request(
            "POST", rt.path(ns), verb="create", body=obj, params={"dryRun": "All" if dry_run else None}
        )
        if not dry_run:
            self._count_write(rt, "create")
        return created

    async def replace(self, rt: ResourceType, obj: JsonObj) -> JsonObj:
        """PUT the whole object; its metadata.resourceVersion (if set) makes the write conditional."""
        path = rt.path(self._namespace_of(rt, obj, None), self._name_of(obj))
        replaced = await self._request("PUT", path, verb="update", body=obj)
        self._count_write(rt, "update")
        return replaced

    async def replace_status(self, rt: ResourceType, obj: JsonObj) -> JsonObj:
        """PUT to /status: only the status stanza is taken from `obj`."""
        path = rt.path(self._namespace_of(rt, obj, None), self._name_of(obj), "status")
        replaced = await self._request("PUT", path, verb="update", body=obj)
        self._count_write(rt, "update", "status")
        return replaced

    async def patch(
        self,
        rt: ResourceType,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
    ) -> JsonObj:
        """Patch an object. `apply` is server-side apply and needs `field_manager`; `force` takes over
        fields owned by other managers (meaningful for apply only).

        JSON patches are retried like any PATCH: make them safe to repeat (a leading `test` op on
        `/metadata/resourceVersion`) when they add to lists.
        """
        if patch_type == "apply" and not field_manager:
            raise ValueError("server-side apply needs a field_manager")
        params = {"fieldManager": field_manager, "force": True if (force and patch_type == "apply") else None}
        patched = await self._request(
            "PATCH",
            rt.path(namespace, name, subresource),
            verb="patch",
            body=patch,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
            params=params,
        )
        self._count_write(rt, "patch", subresource)
        return patched

    async def delete(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        preconditions: Mapping[str, str] | None = None,
        propagation_policy: Literal["Orphan", "Background", "Foreground"] | None = None,
        missing_ok: bool = False,
    ) -> JsonObj | None:
        """Delete an object; returns what the server answered (the object, or a Status).

        `preconditions` ({"uid": ..., "resourceVersion": ...}) guard against deleting a newer object
        that reuses the name. With `missing_ok`, a 404 returns None (and is not counted as a write).
        """
        options: JsonObj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = dict(preconditions)
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        try:
            deleted = await self._request("DELETE", rt.path(namespace, name), verb="delete", body=options)
        except ApiError as exc:
            if missing_ok and exc.not_found:
                return None
            raise
        self._count_write(rt, "delete")
        return deleted

    async def create_subresource(
        self, rt: ResourceType, name: str, namespace: str | None, subresource: str, body: JsonObj
    ) -> JsonObj:
        """POST to a subresource: pods/binding, pods/eviction, serviceaccounts/token."""
        created = await self._request("POST", rt.path(namespace, name, subresource), verb="create", body=body)
        self._count_write(rt, "create", subresource)
        return created

    # --- watch

    async def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = 300,
        allow_bookmarks: bool = True,
        read_timeout: float | None = None,
    ) -> AsyncGenerator[JsonObj, None]:
        """Stream raw watch events (`{"type", "object"}`) from `resource_version` until the server ends it.

        Not retried: a watch that fails must be resumed from the last resourceVersion the *caller* saw,
        which only the caller (a `Reflector`) knows. ERROR events are yielded as they come (a 410 inside
        the stream is one); a non-2xx answer raises `ApiError`; a broken stream raises `TransportError`.
        `timeout_seconds` asks the server to close the stream; `read_timeout` bounds the silence between
        two chunks on the socket. Use it as `async with contextlib.aclosing(client.watch(...)) as events`
        so the connection is closed as soon as the consumer stops.
        """
        params = _encode_params(
            {
                "watch": True,
                "resourceVersion": resource_version,
                "allowWatchBookmarks": allow_bookmarks or None,
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                "timeoutSeconds": timeout_seconds,
            }
        )
        path = rt.path(namespace)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_read=read_timeout)
        loop = asyncio.get_running_loop()
        await self._limiter.acquire()
        started = loop.time()
        try:
            resp = await self._http().request(
                "GET",
                self.url(path),
                params=params,
                headers={"Accept": "application/json", **self.auth_headers()},
                timeout=timeout,
                server_hostname=self.tls_server_name,
                proxy=self._proxy,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            metrics.KUBE_REQUESTS.labels(self.name, "watch", "error").inc()
            raise TransportError(f"watch {path}: {exc!r}") from exc
        try:
            metrics.KUBE_REQUESTS.labels(self.name, "watch", _code_class(resp.status)).inc()
            metrics.KUBE_REQUEST_DURATION.labels(self.name, "watch").observe(loop.time() - started)
            if resp.status >= 400:
                if resp.status == 401:
                    self._token_read_at = -float("inf")
                raise ApiError.from_response(resp.status, await resp.read())
            splitter = _LineSplitter()
            try:
                async for chunk in resp.content.iter_any():
                    for line in splitter.feed(chunk):
                        if line.strip():
                            yield _decode_event(line, path)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransportError(f"watch {path}: stream interrupted: {exc!r}") from exc
            tail = splitter.tail()
            if tail.strip():
                yield _decode_event(tail, path)
        finally:
            # close(), not release(): an unfinished stream must not go back to the pool.
            resp.close()
