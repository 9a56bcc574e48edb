"""Which headers cross the proxy, in each direction: pure functions, unit-tested on their own.

Security first. The caller's identity is whatever *we* authenticated, so everything a client could use
to claim another identity upstream is removed before any request leaves: `Authorization` (upstream
gets our credentials instead), every `Impersonate-*` (the virtual API server would honour them, since
our own identity may impersonate anyone) and every `X-Remote-*` (request-header authentication, in
case an upstream ever trusts our client certificate as a front proxy). Only then are our own
`Impersonate-*` headers added.

Then HTTP/1.1 hygiene (RFC 9110 §7.6.1): hop-by-hop headers — `Connection` and every header it
names, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-*` — describe one
connection and are never forwarded, except that an upgrade request keeps `Connection: Upgrade` and its
`Upgrade` header, because the upgrade is negotiated end to end with the API server (or kubelet)
behind us: `Sec-WebSocket-*` and `X-Stream-Protocol-Version` pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

from multidict import CIMultiDict

__all__ = [
    "HOP_BY_HOP",
    "downstream_headers",
    "impersonation_headers",
    "is_upgrade",
    "upstream_headers",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_IDENTITY_PREFIXES = ("impersonate-", "x-remote-")
# Set by the HTTP client library for the upstream connection (Host) or by us (Authorization).
_REPLACED = frozenset({"authorization", "host"})

Headers = Iterable[tuple[str, str]]


def _connection_tokens(headers: Sequence[tuple[str, str]]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def is_upgrade(headers: Mapping[str, str] | Headers) -> bool:
    """True for an HTTP/1.1 upgrade request: `Connection` names `upgrade` and `Upgrade` is present."""
    if isinstance(headers, Mapping):
        if "Upgrade" not in headers and "upgrade" not in headers:  # the common case, cheaply
            return False
        pairs = list(headers.items())
    else:
        pairs = list(headers)
    return "upgrade" in _connection_tokens(pairs) and any(n.lower() == "upgrade" for n, _ in pairs)


def is_identity_header(name: str) -> bool:
    """Headers a client could use to claim an identity upstream: always dropped."""
    lowered = name.lower()
    return lowered == "authorization" or lowered.startswith(_IDENTITY_PREFIXES)


def upstream_headers(
    client: Headers, *, upgrade: bool = False, remote: str | None = None
) -> CIMultiDict[str]:
    """Headers to send upstream for a client request, before our credentials are added.

    With `upgrade`, `Connection: Upgrade` and the client's `Upgrade` header are kept.
    `remote` (the client address) is appended to `X-Forwarded-For`.
    """
    pairs = list(client)
    nominated = _connection_tokens(pairs)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in pairs:
        lowered = name.lower()
        if lowered in _REPLACED or lowered.startswith(_IDENTITY_PREFIXES):
            continue
        if lowered in HOP_BY_HOP or lowered in nominated:
            if upgrade and lowered == "upgrade":
                out.add(name, value)
            continue
        out.add(name, value)
    if upgrade:
        out["Connection"] = "Upgrade"
    if remote:
        previous = out.getall("X-Forwarded-For", [])
        out["X-Forwarded-For"] = ", ".join([*previous, remote])
    return out


def downstream_headers(upstream: Headers) -> CIMultiDict[str]:
    """Response headers to relay to the client: everything except hop-by-hop ones.

    `Content-Length` is kept (a body of known length is relayed as such, not re-chunked);
    `Transfer-Encoding` is dropped because the server side chooses its own framing.
    """
    pairs = list(upstream)
    nominated = _connection_tokens(pairs)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in pairs:
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in nominated:
            continue
        out.add(name, value)
    return out


def impersonation_headers(
    user: str, groups: Sequence[str], uid: str = "", extra: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[str, str]]:
    """`Impersonate-*` headers naming an authenticated user, as kube-apiserver reads them.

    Extra keys go into the header *name*, so they are percent-encoded (kube-apiserver unescapes and
    lower-cases them): `authentication.kubernetes.io/pod-name` becomes
    `Impersonate-Extra-authentication.kubernetes.io%2Fpod-name`. Values are sent as they are (the API
    server does not unescape them); they come from our own TokenReview or certificate, never a client.
    """
    out = [("Impersonate-User", user)]
    out.extend(("Impersonate-Group", group) for group in groups)
    if uid:
        out.append(("Impersonate-Uid", uid))
    for key, values in (extra or {}).items():
        encoded = quote(key, safe="!#$&'*+-.^_`|~")
        out.extend((f"Impersonate-Extra-{encoded}", value) for value in values)
    return out
