"""Which headers cross the proxy: identity headers never, hop-by-hop headers never (except the
upgrade pair on upgrades), everything end-to-end unchanged."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.headers import (
    downstream_headers,
    impersonation_headers,
    is_identity_header,
    is_upgrade,
    upstream_headers,
)

CLIENT = [
    ("Host", "proxy:8443"),
    ("Authorization", "Bearer client-token"),
    ("Impersonate-User", "admin"),
    ("impersonate-group", "system:masters"),
    ("Impersonate-Extra-scopes", "all"),
    ("Impersonate-Uid", "0"),
    ("X-Remote-User", "admin"),
    ("x-remote-group", "system:masters"),
    ("X-Remote-Extra-Foo", "bar"),
    ("Connection", "keep-alive, X-Private"),
    ("X-Private", "connection-scoped"),
    ("Keep-Alive", "timeout=5"),
    ("Transfer-Encoding", "chunked"),
    ("TE", "trailers"),
    ("Proxy-Authorization", "Basic eA=="),
    ("Accept", "application/json"),
    ("Content-Type", "application/json"),
    ("User-Agent", "kubectl/v1.37.1"),
    ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
    ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
]


def test_identity_and_hop_by_hop_headers_are_stripped() -> None:
    out = upstream_headers(CLIENT, remote="10.0.0.7")
    names = {k.lower() for k in out}
    assert not {n for n in names if n.startswith(("impersonate-", "x-remote-"))}
    assert not names & {"authorization", "host", "connection", "x-private", "keep-alive", "te"}
    assert not names & {"transfer-encoding", "proxy-authorization", "upgrade"}
    assert out["Accept"] == "application/json"
    assert out["User-Agent"] == "kubectl/v1.37.1"
    assert out["X-Stream-Protocol-Version"] == "v4.channel.k8s.io"
    assert out["X-Forwarded-For"] == "10.0.0.7"


def test_upgrade_keeps_the_upgrade_pair() -> None:
    client = [*CLIENT, ("Upgrade", "SPDY/3.1")]
    client = [(k, "Upgrade") if k == "Connection" else (k, v) for k, v in client]
    assert is_upgrade(client)
    out = upstream_headers(client, upgrade=True)
    assert out["Connection"] == "Upgrade" and out["Upgrade"] == "SPDY/3.1"
    assert "Authorization" not in out and "Impersonate-User" not in out


def test_is_upgrade() -> None:
    assert is_upgrade({"Connection": "keep-alive, Upgrade", "Upgrade": "websocket"})
    assert not is_upgrade({"Connection": "keep-alive", "Upgrade": "websocket"})
    assert not is_upgrade({"Connection": "Upgrade"})


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20))
def test_any_identity_header_spelling_is_dropped(suffix: str) -> None:
    for prefix in ("Impersonate-", "IMPERSONATE-", "x-REMOTE-"):
        name = prefix + suffix
        assert is_identity_header(name)
        assert name not in upstream_headers([(name, "v")])


def test_forwarded_for_is_appended() -> None:
    out = upstream_headers([("X-Forwarded-For", "1.1.1.1")], remote="2.2.2.2")
    assert out["X-Forwarded-For"] == "1.1.1.1, 2.2.2.2"


def test_downstream_keeps_end_to_end_headers() -> None:
    out = downstream_headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", "12"),
            ("Audit-Id", "abc"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("Cache-Control", "no-cache, private"),
            ("Warning", "299 - one"),
            ("Warning", "299 - two"),
        ]
    )
    assert out["Content-Length"] == "12" and out["Audit-Id"] == "abc"
    assert out.getall("Warning") == ["299 - one", "299 - two"]
    assert "Transfer-Encoding" not in out and "Connection" not in out


def test_impersonation_headers() -> None:
    headers = impersonation_headers(
        "system:serviceaccount:ns:sa",
        ["system:serviceaccounts", "system:authenticated"],
        "uid-1",
        {"authentication.kubernetes.io/pod-name": ["p"], "scopes%": ["a", "b"]},
    )
    assert ("Impersonate-User", "system:serviceaccount:ns:sa") in headers
    assert [v for k, v in headers if k == "Impersonate-Group"] == [
        "system:serviceaccounts",
        "system:authenticated",
    ]
    assert ("Impersonate-Uid", "uid-1") in headers
    assert ("Impersonate-Extra-authentication.kubernetes.io%2Fpod-name", "p") in headers
    assert [v for k, v in headers if k == "Impersonate-Extra-scopes%25"] == ["a", "b"]
