"""Request targets in one canonical form, decided on before anything else looks at them.

Why: every security decision of the proxy (is this `pods/<p>/exec`? a node-proxy path outside the
allowlist? a service create?) is made on the path, and the API server behind us makes its own
decision on the *same* bytes after its own decoding. If the two readings can differ, a request can be
classified as harmless here and served as something else there: `pods/p/%65xec`, `pods/p/./exec`,
`nodes/n/proxy/stats/../pods`, `pods%2fp/exec`, `//api/v1/...`, `/API/v1/...`.

So the target is decoded exactly once, here, into segments, and is refused when no single reading
exists:

* `%2F` (a slash inside a segment), `.` and `..` segments (dot-segment removal is exactly what lets
  `proxy/stats/../pods` escape an allowlist), `//` (empty segments), a backslash, control characters,
  invalid percent-escapes and undecodable UTF-8 are refused, never "repaired";
* a `%` left after decoding (double encoding, `%252e`) is refused: some component downstream could
  decode a second time;
* the request is forwarded with the path re-encoded from the decoded segments, so what the upstream
  parses is what we classified;
* case is the router's business (`routes.py`): Kubernetes paths are case-sensitive, but a keyword
  spelled in another case is refused there rather than passed on as "not a keyword".

The query string is not rewritten: it is forwarded byte for byte and parsed on demand with the
same rules Go's `url.ParseQuery` applies to the values we read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote_to_bytes

__all__ = ["CanonicalPath", "PathError", "canonicalize"]

# RFC 3986 pchar minus "%": what may appear unescaped in a segment we send upstream.
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# A raw path made only of characters `quote(..., safe=_SEGMENT_SAFE)` leaves alone (and no escapes):
# decoding and re-encoding it is the identity, so the per-segment work can be skipped.
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9!$&'()*+,;=:@\-._~/]*")
MAX_TARGET_LENGTH = 16384
"""Longer request targets are refused (kube-apiserver's own limit on the request line is larger, but
nothing legitimate sent to a virtual cluster needs more: label selectors and field selectors are short)."""


class PathError(Exception):
    """The request target has no single canonical reading. `status` is 400 or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class CanonicalPath:
    """A decoded request path plus its raw query.

    `segments` are the decoded, non-empty path segments; `trailing_slash` remembers a final `/`
    (the API server distinguishes `.../proxy` from `.../proxy/`).
    """

    segments: tuple[str, ...]
    trailing_slash: bool = False
    query: str = ""
    encoded: str = field(default="", compare=False, repr=False)
    """The path as `path` would build it, when the parser already knows it (the common case)."""

    @property
    def path(self) -> str:
        """The path re-encoded from the segments: the only form ever sent upstream."""
        if self.encoded:
            return self.encoded
        body = "/".join(quote(segment, safe=_SEGMENT_SAFE) for segment in self.segments)
        tail = "/" if self.trailing_slash and self.segments else ""
        return f"/{body}{tail}"

    @property
    def path_qs(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    def with_segments(self, segments: tuple[str, ...]) -> CanonicalPath:
        return CanonicalPath(segments, self.trailing_slash, self.query)

    def with_query(self, query: str) -> CanonicalPath:
        return CanonicalPath(self.segments, self.trailing_slash, query, self.encoded)

    def params(self) -> dict[str, list[str]]:
        """Query values by key, in order (Go's url.ParseQuery semantics for well-formed queries)."""
        out: dict[str, list[str]] = {}
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            out.setdefault(key, []).append(value)
        return out

    def param(self, key: str) -> str | None:
        """The first value of `key`, like Go's `url.Values.Get` (which the API server uses)."""
        values = self.params().get(key)
        return values[0] if values else None


def _decode_segment(raw: str) -> str:
    if _BAD_ESCAPE.search(raw):
        raise PathError(400, "invalid percent-encoding in request path")
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise PathError(400, "request path is not valid UTF-8") from None
    if "/" in decoded:
        raise PathError(403, "encoded slash in request path")
    if "%" in decoded:
        raise PathError(403, "double percent-encoding in request path")
    if "\\" in decoded:
        raise PathError(403, "backslash in request path")
    if decoded in (".", ".."):
        raise PathError(403, "dot segment in request path")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        raise PathError(400, "control character in request path")
    return decoded


def canonicalize(target: str) -> CanonicalPath:
    """Parse a raw HTTP request target (origin form: `/path?query`) into its canonical form.

    Raises `PathError` for anything ambiguous; see the module docstring for the rules.
    """
    if len(target) > MAX_TARGET_LENGTH:
        raise PathError(400, "request target too long")
    if not target.startswith("/"):
        raise PathError(400, "request target must be an absolute path")
    raw_path, _, query = target.partition("?")
    if not target.isascii():
        raise PathError(400, "unescaped non-ASCII characters in request target")
    if "#" in raw_path:
        raise PathError(400, "fragment in request target")
    if _CONTROL.search(target):
        raise PathError(400, "whitespace or control character in request target")
    if "\\" in raw_path:
        raise PathError(403, "backslash in request path")
    if raw_path == "/":
        return CanonicalPath((), False, query)
    raw_segments = raw_path[1:].split("/")
    trailing = raw_segments[-1] == ""
    if trailing:
        raw_segments.pop()
    if "" in raw_segments:
        raise PathError(403, "empty segment (//) in request path")
    if _PLAIN_PATH.fullmatch(raw_path):
        if "." in raw_segments or ".." in raw_segments:
            raise PathError(403, "dot segment in request path")
        return CanonicalPath(tuple(raw_segments), trailing, query, raw_path)
    return CanonicalPath(tuple(_decode_segment(s) for s in raw_segments), trailing, query)
