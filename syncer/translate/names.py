"""Host names for virtual objects, the reserved metadata keys, and redaction of host names in text.

A namespaced virtual object ``ns/name`` of virtual cluster ``vc`` lives in the one host namespace as
``<name>-x-<ns>-x-<vc>`` (vcluster's scheme, kept for compatibility with tooling that knows it).

The scheme is *not injective*: ``web-x-prod`` in ``team`` and ``web`` in ``prod-x-team`` both become
``web-x-prod-x-team-x-vc``, and names longer than 63 characters keep only 40 bits of hash. We keep the
compatible name and make collisions harmless instead: every host copy carries annotations naming its
virtual object, and :func:`syncer.translate.metadata.ownership` refuses to touch a host object whose
annotations name another one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

RESERVED_PREFIX = "vcluster.loft.sh/"

# Labels on every host copy.
MARKER_LABEL = RESERVED_PREFIX + "managed-by"  # value: the vcluster name; the ownership marker
NAMESPACE_LABEL = RESERVED_PREFIX + "namespace"  # value: the virtual namespace

# Annotations on every host copy: the reverse mapping, and the proof of which object a copy belongs to.
ANN_OBJECT_NAME = RESERVED_PREFIX + "object-name"
ANN_OBJECT_NAMESPACE = RESERVED_PREFIX + "object-namespace"
ANN_OBJECT_UID = RESERVED_PREFIX + "object-uid"
ANN_OBJECT_KIND = RESERVED_PREFIX + "object-kind"
# Which tenant keys we copied, so keys removed in the virtual object are removed on the host while keys
# that host tooling added stay (a 2-way merge with ownership, as vcluster does).
ANN_MANAGED_ANNOTATIONS = RESERVED_PREFIX + "managed-annotations"
ANN_MANAGED_LABELS = RESERVED_PREFIX + "managed-labels"

# Pod annotations read by rewritten downward-API field references (vcluster's names).
ANN_POD_NAME = RESERVED_PREFIX + "name"
ANN_POD_NAMESPACE = RESERVED_PREFIX + "namespace"
ANN_POD_UID = RESERVED_PREFIX + "uid"
ANN_POD_SERVICE_ACCOUNT = RESERVED_PREFIX + "service-account-name"
ANN_POD_LABELS = RESERVED_PREFIX + "labels"
# Names of the virtual pod's scheduling gates, so a gate the tenant removes is removed on the host and
# a gate some host admission plugin added is not.
ANN_POD_SCHEDULING_GATES = RESERVED_PREFIX + "scheduling-gates"

MAX_NAME_LENGTH = 63
_HASHED_PREFIX_LENGTH = 52
_HASH_LENGTH = 10
_SEPARATOR = "-x-"

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_dns1123_label(value: str) -> bool:
    """RFC 1123 label as Kubernetes validates it (namespaces, hostnames, service names)."""
    return len(value) <= 63 and _DNS1123_LABEL.fullmatch(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    """RFC 1123 subdomain as Kubernetes validates it (names of pods, configmaps, secrets, PVCs)."""
    return len(value) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def _safe_concat(full: str) -> str:
    """Shorten a joined name to 63 characters the way vcluster does, staying a valid name.

    Over the limit we keep the first 52 characters, then ``-`` and 10 hex digits of sha256 of the whole
    name. A cut that ends in ``.`` would leave ``.-`` (an empty DNS label); vcluster rewrites ``.-`` to
    ``-``, which is the same as dropping the dot, so the result stays byte-compatible. A cut that ends in
    ``-`` gives ``--``, which is valid in a DNS-1123 label, so it is kept (compatible again). The hash is
    of the full joined name, so both halves of an ambiguous ``-x-`` pair still collide: that is the
    documented ambiguity, caught by ownership annotations, not by names.
    """
    if len(full) <= MAX_NAME_LENGTH:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH_LENGTH]
    prefix = full[:_HASHED_PREFIX_LENGTH].removesuffix(".")
    return f"{prefix}-{digest}"


def host_name(name: str, namespace: str, vcluster: str) -> str:
    """The host name of the namespaced virtual object ``namespace/name``.

    ``<name>-x-<namespace>-x-<vcluster>``, shortened to 63 characters by :func:`_safe_concat`.

    Validity: if ``name`` is a DNS-1123 label the result is one too (what services, and pod hostnames,
    need). Virtual names of pods, configmaps, secrets and PVCs may be DNS-1123 *subdomains* (dots, up to
    253 characters); their dots are kept, as vcluster keeps them, and the result is a DNS-1123 subdomain
    of at most 63 characters, which every kind that allows dotted names accepts. Replacing the dots would
    make ``a.b`` and ``a-b`` collide for no gain.

    Inputs are trusted to be what the API server accepted; empty parts are a programming error.
    """
    if not (name and namespace and vcluster):
        raise ValueError(
            f"host_name needs a name, namespace and vcluster, got {name!r}, {namespace!r}, {vcluster!r}"
        )
    return _safe_concat(f"{name}{_SEPARATOR}{namespace}{_SEPARATOR}{vcluster}")


def host_cluster_name(name: str, host_namespace: str, vcluster: str) -> str:
    """The host name of a cluster-scoped virtual object (e.g. a PriorityClass).

    ``vcluster-<name>-x-<host namespace>-x-<vcluster>``: the host namespace is part of the name because
    two virtual clusters with the same name in different host namespaces share the cluster scope.
    """
    if not (name and host_namespace and vcluster):
        raise ValueError(
            f"host_cluster_name needs a name, host namespace and vcluster, "
            f"got {name!r}, {host_namespace!r}, {vcluster!r}"
        )
    return _safe_concat(f"vcluster-{name}{_SEPARATOR}{host_namespace}{_SEPARATOR}{vcluster}")


# Characters that may continue a Kubernetes object name; a host name is only replaced when it is not
# part of a longer name (so "web-x-ns-x-vc" inside "web-x-ns-x-vc2" or "a.web-x-ns-x-vc" is left alone).
_NAME_CHAR = r"[a-z0-9.\-]"


def _replace_whole_name(text: str, name: str, replacement: str) -> str:
    pattern = rf"(?<!{_NAME_CHAR}){re.escape(name)}(?!{_NAME_CHAR})"
    return re.sub(pattern, lambda _match: replacement, text)


def redact_host_names(text: str, host_to_virtual: Mapping[str, str], *, vcluster: str | None = None) -> str:
    """Replace host names in a human-readable text (event and status messages) by virtual ones.

    ``host_to_virtual`` maps exact host strings to their virtual spelling; qualified forms such as
    ``<host ns>/<host name>`` → ``<virtual ns>/<virtual name>`` belong in it too, longest first wins.
    A match must not be part of a longer name (vcluster's plain ``ReplaceAll`` could rewrite ``web-x-a``
    inside ``web-x-a2``).

    With ``vcluster`` given, any other short host name ``<name>-x-<ns>-x-<vcluster>`` left in the text
    (say a configmap a kubelet message names) becomes ``<name>``. Shortened (hashed) names cannot be
    reversed without a lookup; callers that know them put them in ``host_to_virtual``.
    """
    for host in sorted(host_to_virtual, key=len, reverse=True):
        if host:
            text = _replace_whole_name(text, host, host_to_virtual[host])
    if vcluster:
        generic = (
            rf"(?<!{_NAME_CHAR})([a-z0-9](?:[a-z0-9.\-]*[a-z0-9])?)-x-[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?"
            rf"-x-{re.escape(vcluster)}(?!{_NAME_CHAR})"
        )
        text = re.sub(generic, lambda match: match.group(1), text)
    return text
