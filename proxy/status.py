"""Error answers in the shape every Kubernetes client understands: a `v1.Status` object.

kubectl prints `message` and decides on retries and fallbacks from `code`/`reason`, so answers the
proxy makes itself look exactly like the API server's own (same reasons, same message style).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["REASONS", "status_body", "status_response"]

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    500: "InternalError",
    502: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, message: str, *, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, ""),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def status_response(
    code: int,
    message: str,
    *,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    close: bool = False,
) -> web.Response:
    """A `Status` error answer; `close` ends the connection after it (for declined upgrades)."""
    response = web.Response(
        status=code,
        body=json.dumps(status_body(code, message, reason=reason, details=details)).encode(),
        content_type="application/json",
    )
    if close:
        response.force_close()
    return response


def forbidden(
    user: str, verb: str, resource: str, subresource: str, namespace: str, name: str
) -> web.Response:
    """The API server's own wording for an RBAC denial, so tools that match on it keep working."""
    full = f"{resource}/{subresource}" if subresource else resource
    where = f' in the namespace "{namespace}"' if namespace else ""
    subject = f'{resource} "{name}"' if name else resource
    return status_response(
        403,
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{full}" in API group ""{where}',
        details={"name": name, "kind": resource},
    )
