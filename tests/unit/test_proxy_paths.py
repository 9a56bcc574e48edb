"""Canonical request paths and routing: one reading of every target, or a refusal."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.paths import CanonicalPath, PathError, canonicalize
from proxy.routes import RouteKind, classify

# Segments a legitimate client may send: anything printable except what is refused.
SEGMENT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\%"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))


@given(st.lists(SEGMENT, max_size=8), st.booleans())
def test_encoded_segments_round_trip(segments: list[str], trailing: bool) -> None:
    target = "/" + "/".join(quote(s, safe="") for s in segments) + ("/" if trailing and segments else "")
    parsed = canonicalize(target)
    assert list(parsed.segments) == segments
    assert canonicalize(parsed.path).segments == parsed.segments  # the forwarded form reads the same


@given(st.text(max_size=60))
def test_any_target_is_refused_or_canonical(raw: str) -> None:
    target = "/" + raw
    try:
        parsed = canonicalize(target)
    except PathError as exc:
        assert exc.status in (400, 403)
        return
    for segment in parsed.segments:
        assert segment and segment not in (".", "..")
        assert "/" not in segment and "%" not in segment and "\\" not in segment
    again = canonicalize(parsed.path_qs)
    assert again == parsed  # canonical form is a fixed point


@given(st.text(alphabet="abz09-._~!$&'()*+,;=:@/%2eE", max_size=40))
def test_fast_path_agrees_with_the_general_one(raw: str) -> None:
    try:
        parsed = canonicalize("/" + raw)
    except PathError:
        return
    rebuilt = CanonicalPath(parsed.segments, parsed.trailing_slash, parsed.query)  # no cached encoding
    assert rebuilt.path == parsed.path


@given(st.lists(SEGMENT, max_size=4), st.sampled_from([".", "..", "%2e", "%2E%2e", ".%2e", "%2e."]))
def test_dot_segments_are_always_refused(prefix: list[str], dots: str) -> None:
    target = "/" + "/".join([*(quote(s, safe="") for s in prefix), dots, "x"])
    with pytest.raises(PathError) as exc:
        canonicalize(target)
    assert exc.value.status == 403


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/api/v1/nodes/n%2fproxy/configz", 403),
        ("/api/v1/nodes/n%2Fproxy/configz", 403),
        ("/api//v1", 403),
        ("//api/v1", 403),
        ("/api/v1/%252e%252e/x", 403),
        ("/api\\v1", 403),
        ("/api/v1/%zz", 400),
        ("/api/v1/%e2%28%a1", 400),
        ("/api/v1/%00", 400),
        ("api/v1", 400),
        ("*", 400),
        ("https://evil/api/v1", 400),
        ("/api/v1#frag", 400),
        ("/api/v1 /x", 400),
        ("/api/v1/caf\u00e9", 400),
    ],
)
def test_refused_targets(target: str, status: int) -> None:
    with pytest.raises(PathError) as exc:
        canonicalize(target)
    assert exc.value.status == status


def test_decoding_and_reencoding() -> None:
    parsed = canonicalize("/api/v1/namespaces/ns/pods/p/%65xec?command=ls&command=-l")
    assert parsed.segments == ("api", "v1", "namespaces", "ns", "pods", "p", "exec")
    assert parsed.path == "/api/v1/namespaces/ns/pods/p/exec"
    assert parsed.path_qs.endswith("?command=ls&command=-l")  # the query is forwarded as sent
    assert parsed.params()["command"] == ["ls", "-l"]
    assert parsed.param("command") == "ls"
    assert canonicalize("/").segments == ()
    assert canonicalize("/api/v1/").trailing_slash
    assert canonicalize("/a%20b/c:d").path == "/a%20b/c:d"


def route(target: str, method: str = "GET") -> tuple[RouteKind, str, str, str]:
    r = classify(method, canonicalize(target))
    return r.kind, r.namespace, r.name, r.subresource


@pytest.mark.parametrize("sub", ["exec", "attach", "portforward", "log"])
def test_pod_streams_route_to_the_host(sub: str) -> None:
    assert route(f"/api/v1/namespaces/ns/pods/p/{sub}") == (RouteKind.POD_STREAM, "ns", "p", sub)
    assert route(f"/api/v1/namespaces/ns/pods/p/{sub}/", "POST")[0] is RouteKind.POD_STREAM
    # Percent-encoded spelling: decoded before routing, so it cannot slip past as pass-through.
    encoded = "".join(f"%{ord(c):02x}" for c in sub)
    assert route(f"/api/v1/namespaces/ns/pods/p/{encoded}")[0] is RouteKind.POD_STREAM


def test_other_routes() -> None:
    assert route("/api/v1/nodes/n1/proxy/healthz")[0] is RouteKind.NODE_PROXY
    assert classify("GET", canonicalize("/api/v1/nodes/n1/proxy/stats/summary")).rest == ("stats", "summary")
    assert route("/api/v1/namespaces/ns/services", "POST")[0] is RouteKind.SERVICE_CREATE
    assert route("/api/v1/namespaces/ns/services", "GET")[0] is RouteKind.PASSTHROUGH
    assert route("/api/v1/namespaces/ns/pods/p/proxy/exec")[0] is RouteKind.PASSTHROUGH
    assert route("/api/v1/namespaces/ns/pods/p/ephemeralcontainers")[0] is RouteKind.PASSTHROUGH
    assert route("/apis/apps/v1/namespaces/ns/deployments")[0] is RouteKind.PASSTHROUGH
    assert route("/version")[0] is RouteKind.PASSTHROUGH


@pytest.mark.parametrize(
    "target",
    [
        "/API/v1/nodes/n/proxy/configz",
        "/api/V1/namespaces/ns/pods/p/exec",
        "/api/v1/Namespaces/ns/pods/p/exec",
        "/api/v1/namespaces/ns/Pods/p/exec",
        "/api/v1/namespaces/ns/pods/p/Exec",
        "/api/v1/NODES/n/proxy/x",
        "/api/v1/nodes/n/Proxy/x",
        "/api/v1/proxy/nodes/n/x",
        "/api/v1/namespaces/ns/pods/p/exec/extra",
    ],
)
def test_ambiguous_routes_are_refused(target: str) -> None:
    with pytest.raises(PathError) as exc:
        classify("GET", canonicalize(target))
    assert exc.value.status == 403


def test_canonical_path_builders() -> None:
    base = canonicalize("/api/v1/namespaces/a/pods/b/exec/?x=1")
    moved = base.with_segments(("api", "v1", "namespaces", "h", "pods", "b-x-a-x-vc", "exec"))
    assert moved.path_qs == "/api/v1/namespaces/h/pods/b-x-a-x-vc/exec/?x=1"
    assert CanonicalPath(("a",)).with_query("q=1").path_qs == "/a?q=1"


def test_host_safe_query_drops_tls_downgrade() -> None:
    from proxy.redirect import host_safe_query

    assert (
        host_safe_query("follow=true&insecureSkipTLSVerifyBackend=true&container=c")
        == "follow=true&container=c"
    )
