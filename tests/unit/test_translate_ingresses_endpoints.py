"""Ingress and Endpoints translation: every name the host copy refers to is the host name."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from syncer.kinds.ingresses import translate_ingress_spec
from syncer.translate.names import host_name

INGRESS_SPEC = {
    "ingressClassName": "nginx",
    "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
    "tls": [{"hosts": ["a.example.com"], "secretName": "tls-a"}, {"hosts": ["b.example.com"]}],
    "rules": [
        {
            "host": "a.example.com",
            "http": {
                "paths": [
                    {
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": "web", "port": {"name": "http"}}},
                    },
                    {
                        "path": "/static",
                        "pathType": "Prefix",
                        "backend": {
                            "resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "assets"}
                        },
                    },
                ]
            },
        },
        {"host": "no-paths.example.com"},
    ],
}


def rename(name: str) -> str:
    return host_name(name, "team", "vc1")


def test_every_backend_and_tls_secret_is_renamed_and_the_rest_kept() -> None:
    original = copy.deepcopy(INGRESS_SPEC)
    out = translate_ingress_spec(INGRESS_SPEC, rename)
    assert original == INGRESS_SPEC, "translation must not modify the virtual object"
    assert out["ingressClassName"] == "nginx"
    assert out["defaultBackend"]["service"]["name"] == rename("fallback")
    paths = out["rules"][0]["http"]["paths"]
    assert paths[0]["backend"]["service"] == {"name": rename("web"), "port": {"name": "http"}}
    assert paths[1]["backend"]["resource"]["name"] == rename("assets")
    assert paths[1]["backend"]["resource"]["kind"] == "Bucket"
    assert out["tls"][0] == {"hosts": ["a.example.com"], "secretName": rename("tls-a")}
    assert out["tls"][1] == {"hosts": ["b.example.com"]}
    assert out["rules"][1] == {"host": "no-paths.example.com"}


names = st.from_regex(r"[a-z]([a-z0-9-]{0,40}[a-z0-9])?", fullmatch=True)


@given(st.lists(names, min_size=1, max_size=5), names)
def test_backend_names_all_map_to_valid_host_names(services: list[str], secret: str) -> None:
    spec = {
        "tls": [{"secretName": secret}],
        "rules": [
            {"http": {"paths": [{"path": "/", "backend": {"service": {"name": s}}} for s in services]}}
        ],
    }
    out = translate_ingress_spec(spec, rename)
    got = [p["backend"]["service"]["name"] for p in out["rules"][0]["http"]["paths"]]
    assert got == [rename(s) for s in services]
    assert all(len(n) <= 63 for n in got)
    assert out["tls"][0]["secretName"] == rename(secret)


def test_endpoint_subsets_point_at_host_pods() -> None:
    from syncer.kinds.endpoints import translate_subsets

    subsets = [
        {
            "addresses": [
                {
                    "ip": "192.0.2.1",
                    "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "name": "db-0", "namespace": "team", "uid": "u"},
                },
                {"ip": "192.0.2.2", "targetRef": {"kind": "Node", "name": "n1"}},
                {"ip": "192.0.2.3"},
            ],
            "notReadyAddresses": [{"ip": "192.0.2.4", "targetRef": {"kind": "Pod", "name": "db-1"}}],
            "ports": [{"name": "pg", "port": 5432}],
        }
    ]
    original = copy.deepcopy(subsets)
    out = translate_subsets(
        subsets, rename_pod=lambda n, ns: host_name(n, ns or "team", "vc1"), host_namespace="hostns"
    )
    assert subsets == original
    ready, not_ready = out[0]["addresses"], out[0]["notReadyAddresses"]
    assert ready[0] == {
        "ip": "192.0.2.1",
        "targetRef": {"kind": "Pod", "name": host_name("db-0", "team", "vc1"), "namespace": "hostns"},
    }
    assert ready[1] == {"ip": "192.0.2.2"}
    assert ready[2] == {"ip": "192.0.2.3"}
    assert not_ready[0]["targetRef"]["name"] == host_name("db-1", "team", "vc1")
    assert out[0]["ports"] == [{"name": "pg", "port": 5432}]
