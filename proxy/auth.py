"""Who is calling, and may they: authentication at the proxy, authorization by the virtual cluster.

A TLS-terminating proxy cannot pass a client certificate through, so callers are authenticated here,
the way kube-apiserver would authenticate them, and the answer travels upstream as `Impersonate-*`:

1. a client certificate that verified against the virtual cluster's client CA (the TLS layer checked
   chain, validity and key usage; the handshake fails for any other certificate): user = CN,
   groups = O, plus `system:authenticated` as the API server adds it;
2. else `Authorization: Bearer <token>`: a TokenReview in the virtual cluster (ServiceAccount
   tokens, bootstrap tokens, anything the virtual API server accepts). Results are cached for a few
   seconds in a bounded LRU keyed by the token's SHA-256 (never the token itself), so a burst of
   requests costs one review, and concurrent first requests share one in-flight review. Rejections are
   cached for a shorter time, which blunts floods of bad tokens without locking out a token that
   has only just been issued;
3. else the anonymous user, `system:anonymous` in `system:unauthenticated`: the virtual API server
   then grants exactly what it grants anonymous callers (discovery, `/healthz`, `/version`).

Any other `Authorization` scheme is refused (401) rather than silently treated as anonymous.

Authorization of everything passed through is the virtual API server's own (it sees the impersonated
user). For requests that do NOT reach the virtual API server — pod streams served by the host, node
proxy, the host half of a service create — we ask it with a SubjectAccessReview first.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from syncer.kube.client import KubeClient, KubeError

from .headers import impersonation_headers

__all__ = [
    "ANONYMOUS",
    "AuthenticationError",
    "Authenticator",
    "TokenCache",
    "UserInfo",
    "authorize",
    "user_from_peercert",
]

log = logging.getLogger(__name__)

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"

TOKEN_REVIEWS_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECT_ACCESS_REVIEWS_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated identity, as the Kubernetes `user.Info` interface describes one."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    @property
    def extra_map(self) -> dict[str, list[str]]:
        return {key: list(values) for key, values in self.extra}

    @functools.cached_property
    def impersonation(self) -> tuple[tuple[str, str], ...]:
        """The `Impersonate-*` headers for this user (computed once per identity object)."""
        return tuple(impersonation_headers(self.name, self.groups, self.uid, dict(self.extra)))

    def review_subject(self) -> dict[str, Any]:
        """The subject part of a SubjectAccessReview spec."""
        spec: dict[str, Any] = {"user": self.name, "groups": list(self.groups)}
        if self.uid:
            spec["uid"] = self.uid
        if self.extra:
            spec["extra"] = self.extra_map
        return spec


ANONYMOUS = UserInfo("system:anonymous", (UNAUTHENTICATED,))


class AuthenticationError(Exception):
    """The credentials were presented but are not valid (401), or could not be checked (503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _with_authenticated(groups: list[str]) -> tuple[str, ...]:
    if AUTHENTICATED not in groups:
        groups = [*groups, AUTHENTICATED]
    return tuple(groups)


def user_from_peercert(peercert: Mapping[str, Any] | None) -> UserInfo | None:
    """User from a verified client certificate as `ssl` decodes it (`getpeercert()`): CN and O's.

    `None` when there is no certificate or it carries no common name (kube-apiserver refuses such a
    certificate as well).
    """
    if not peercert:
        return None
    subject = peercert.get("subject", ())
    try:
        return _user_from_subject(subject)
    except TypeError:  # not hashable: not what `ssl` produces, but decode it anyway
        return _user_from_subject.__wrapped__(subject)


@functools.lru_cache(maxsize=1024)
def _user_from_subject(subject: Any) -> UserInfo | None:
    # Cached so that one identity object (with its impersonation headers) serves every request of a
    # client: the subject is the same tuple of tuples on every connection of that certificate.
    common_name = ""
    organizations: list[str] = []
    for rdn in subject:
        for key, value in rdn:
            if key == "commonName":
                common_name = value
            elif key == "organizationName":
                organizations.append(value)
    if not common_name:
        return None
    return UserInfo(common_name, _with_authenticated(organizations))


def user_from_token_review(review: Mapping[str, Any]) -> UserInfo | None:
    status = review.get("status") or {}
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    name = user.get("username")
    if not name:
        return None
    extra = tuple(
        sorted((str(k), tuple(str(v) for v in vs or ())) for k, vs in (user.get("extra") or {}).items())
    )
    return UserInfo(
        str(name),
        tuple(str(g) for g in user.get("groups") or ()),
        str(user.get("uid") or ""),
        extra,
    )


class TokenCache:
    """A bounded LRU of token → review outcome with per-entry expiry. Pure bookkeeping, no I/O.

    Keys are SHA-256 digests, so a heap dump of the proxy does not hand out working tokens.
    """

    def __init__(self, *, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, UserInfo | None]] = OrderedDict()

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, key: bytes) -> tuple[bool, UserInfo | None]:
        """(hit, user): a hit with user None is a cached rejection."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, user = entry
        if self._clock() >= expires:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, user

    def put(self, key: bytes, user: UserInfo | None, ttl: float) -> None:
        self._entries[key] = (self._clock() + ttl, user)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class Authenticator:
    """Turns a request's TLS peer certificate or bearer token into a `UserInfo`."""

    def __init__(
        self,
        virtual: KubeClient,
        *,
        ttl: float = 10.0,
        negative_ttl: float = 2.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.virtual = virtual
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.cache = TokenCache(max_entries=max_entries, clock=clock)
        self._inflight: dict[bytes, asyncio.Future[UserInfo | None]] = {}

    async def authenticate(self, peercert: Mapping[str, Any] | None, authorization: str | None) -> UserInfo:
        user = user_from_peercert(peercert)
        if user is not None:
            return user
        if authorization is None:
            return ANONYMOUS
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError(401, "Unauthorized")
        user = await self.review(token)
        if user is None:
            raise AuthenticationError(401, "Unauthorized")
        return user

    async def review(self, token: str) -> UserInfo | None:
        """The user a token belongs to (None: rejected), from the cache or one shared TokenReview."""
        key = TokenCache.key(token)
        hit, user = self.cache.get(key)
        if hit:
            return user
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[UserInfo | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            user = await self._token_review(token)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else AuthenticationError(503, "cancelled"))
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._inflight.pop(key, None)
        self.cache.put(key, user, self.ttl if user is not None else self.negative_ttl)
        future.set_result(user)
        return user

    async def _token_review(self, token: str) -> UserInfo | None:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            review = await self.virtual.request("POST", TOKEN_REVIEWS_PATH, body=body, timeout=10.0)
        except KubeError as exc:
            log.warning("TokenReview failed", extra={"err": str(exc)})
            raise AuthenticationError(503, "authentication is temporarily unavailable") from exc
        return user_from_token_review(review)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


async def authorize(
    virtual: KubeClient,
    user: UserInfo,
    *,
    verb: str,
    resource: str,
    subresource: str = "",
    namespace: str = "",
    name: str = "",
    group: str = "",
) -> Decision:
    """Ask the virtual cluster whether `user` may do this (a SubjectAccessReview, never cached:
    revoking a RoleBinding must take effect on the next exec, not ten seconds later)."""
    attributes: dict[str, Any] = {"verb": verb, "group": group, "resource": resource}
    if subresource:
        attributes["subresource"] = subresource
    if namespace:
        attributes["namespace"] = namespace
    if name:
        attributes["name"] = name
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {**user.review_subject(), "resourceAttributes": attributes},
    }
    review = await virtual.request("POST", SUBJECT_ACCESS_REVIEWS_PATH, body=body, timeout=10.0)
    status = review.get("status") or {}
    allowed = bool(status.get("allowed")) and not status.get("denied")
    return Decision(allowed, str(status.get("reason") or ""))
