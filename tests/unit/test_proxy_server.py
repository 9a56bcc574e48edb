"""The proxy's TLS: serving certificate SANs and live re-issue, TLS >= 1.2, client-CA verification; and
the pure parts of node proxy and service create."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509

from proxy.auth import user_from_peercert
from proxy.nodeproxy import allowed_subpath, metrics_text, node_name, stats_summary
from proxy.server import ServingCertificate, desired_sans, server_ssl_context
from proxy.services import virtual_body_with_host_allocation
from syncer.kinds.services import host_spec, is_pending_proxy_copy
from syncer.kube import pki
from syncer.options import SyncerOptions


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d: Path = tmp_path_factory.mktemp("cas")
    server_ca, client_ca, other_ca = pki.new_ca("server-ca"), pki.new_ca("client-ca"), pki.new_ca("other")
    server_ca.write(d / "server-ca.crt", d / "server-ca.key")
    client_ca.write(d / "client-ca.crt", d / "client-ca.key")
    pki.issue(client_ca, "alice", organizations=["devs"], client=True).write(d / "alice.crt", d / "alice.key")
    pki.issue(other_ca, "mallory", organizations=["system:masters"], client=True).write(
        d / "m.crt", d / "m.key"
    )
    return {"dir": d, "server_ca": server_ca}


def options(d: Path, **kw: Any) -> SyncerOptions:
    return SyncerOptions(
        name="vc1",
        target_namespace="team-a",
        virtual_kubeconfig="unused",
        server_ca_cert=str(d / "server-ca.crt"),
        server_ca_key=str(d / "server-ca.key"),
        client_ca_cert=str(d / "client-ca.crt"),
        **kw,
    )


def test_desired_sans(cas: dict[str, Any]) -> None:
    sans = desired_sans(options(cas["dir"], tls_sans=("vc.example.com", "localhost")), "127.96.0.7")
    for name in (
        "localhost",
        "127.0.0.1",
        "kubernetes.default.svc.cluster.local",
        "vcluster",
        "vcluster.team-a",
        "vcluster.team-a.svc",
        "vcluster.team-a.svc.cluster.local",
        "127.96.0.7",
        "vc.example.com",
    ):
        assert name in sans
    assert len(sans) == len(set(sans))
    assert "127.96.0.7" not in desired_sans(options(cas["dir"]), None)


@pytest.fixture
async def tls_server(cas: dict[str, Any]) -> AsyncIterator[tuple[ServingCertificate, int]]:
    cert = ServingCertificate.from_options(options(cas["dir"]))
    cert.ensure(["localhost", "127.0.0.1"])

    async def whoami(request: web.BaseRequest) -> web.Response:
        transport = request.transport
        user = user_from_peercert(transport.get_extra_info("peercert") if transport else None)
        return web.Response(text=user.name if user else "anonymous")

    runner = web.ServerRunner(web.Server(whoami), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=cert.context).start()
    try:
        yield cert, runner.addresses[0][1]
    finally:
        await runner.cleanup()


def client_context(cas: dict[str, Any], cert: str | None = None, **kw: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cas["dir"] / "server-ca.crt"))
    if cert:
        ctx.load_cert_chain(str(cas["dir"] / f"{cert}.crt"), str(cas["dir"] / f"{cert}.key"))
    for key, value in kw.items():
        setattr(ctx, key, value)
    return ctx


async def fetch(port: int, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> tuple[str, set[str]]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=server_hostname
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    sans = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    names = set(sans.value.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in sans.value.get_values_for_type(x509.IPAddress)
    }
    _, _, body = raw.partition(b"\r\n\r\n")
    return body.decode(), names


async def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """The handshake failed, or (TLS 1.3: the client learns late) the server answered nothing."""
    try:
        body, _ = await fetch(port, ctx)
    except (ssl.SSLError, ConnectionError):
        return True
    return body == ""


async def test_client_certificates_and_anonymous(
    tls_server: tuple[ServingCertificate, int], cas: dict[str, Any]
) -> None:
    _, port = tls_server
    assert (await fetch(port, client_context(cas, "alice")))[0] == "alice"
    assert (await fetch(port, client_context(cas)))[0] == "anonymous"
    # A certificate from another CA is refused in the handshake, whatever its CN and O claim.
    assert await refused(port, client_context(cas, "m"))


async def test_certificate_is_reissued_when_sans_change(
    tls_server: tuple[ServingCertificate, int], cas: dict[str, Any]
) -> None:
    cert, port = tls_server
    _, names = await fetch(port, client_context(cas))
    assert names == {"localhost", "127.0.0.1"}
    assert not cert.ensure(["127.0.0.1", "localhost"])  # same set: nothing issued
    assert cert.ensure(["localhost", "127.0.0.1", "127.96.0.9", "vcluster.team-a.svc"])
    _, names = await fetch(port, client_context(cas), server_hostname="vcluster.team-a.svc")
    assert {"127.96.0.9", "vcluster.team-a.svc"} <= names  # the live context serves the new one


def test_server_context_settings(cas: dict[str, Any]) -> None:
    ctx = server_ssl_context(cas["dir"] / "client-ca.crt")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2 and ctx.verify_mode == ssl.CERT_OPTIONAL


# ------------------------------------------------------------------------------------ node proxy


def test_node_names() -> None:
    assert node_name("kwok-node-0") == "kwok-node-0"
    assert node_name("kwok-node-0:10250") == "kwok-node-0"
    assert node_name("https:kwok-node-0:10250") == "kwok-node-0"
    for bad in ("ftp:n:1", "n:port", "a:b:c:d", "UPPER", "", "n/x"):
        assert node_name(bad) is None


def test_allowlist() -> None:
    assert allowed_subpath(("healthz",)) == "healthz"
    assert allowed_subpath(("stats", "summary")) == "stats/summary"
    assert allowed_subpath(("containerLogs", "ns", "p", "c")) == "containerLogs"
    for denied in (
        ("exec", "ns", "p", "c"),
        ("runningpods",),
        ("stats",),
        ("metrics", "cadvisor"),
        ("configz",),
        ("containerLogs", "ns", "p"),
        ("healthz", "ping"),
        (),
    ):
        assert allowed_subpath(denied) is None


POD = {
    "metadata": {"name": "web", "namespace": "team", "uid": "u1"},
    "spec": {"nodeName": "n1", "containers": [{"name": "app"}]},
    "status": {
        "phase": "Running",
        "startTime": "2026-01-01T00:00:00Z",
        "containerStatuses": [{"name": "app", "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}}],
    },
}


def test_stats_and_metrics_show_virtual_names_only() -> None:
    summary = stats_summary("n1", {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}, [POD])
    assert summary["node"]["nodeName"] == "n1"
    assert summary["pods"][0]["podRef"] == {"name": "web", "namespace": "team", "uid": "u1"}
    assert summary["pods"][0]["containers"] == [{"name": "app", "startTime": "2026-01-01T00:00:01Z"}]
    text = metrics_text([POD, {"status": {"phase": "Pending"}}])
    assert "kubelet_running_pods 1\n" in text
    assert 'kubelet_running_containers{container_state="running"} 1\n' in text


# -------------------------------------------------------------------------------- service create


def test_virtual_body_gets_the_host_allocation() -> None:
    virtual = {
        "metadata": {"name": "web", "namespace": "team"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    spec = host_spec(virtual, "vc1")
    assert spec["selector"]["vcluster.loft.sh/managed-by"] == "vc1" and "clusterIP" not in spec
    host = {
        "spec": {
            "clusterIP": "127.96.0.20",
            "clusterIPs": ["127.96.0.20"],
            "ipFamilies": ["IPv4"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31234}],
        }
    }
    out = virtual_body_with_host_allocation(virtual, host)
    assert out["spec"]["clusterIP"] == "127.96.0.20" and out["spec"]["clusterIPs"] == ["127.96.0.20"]
    assert out["spec"]["ports"][0]["nodePort"] == 31234
    assert out["spec"]["selector"] == {"app": "web"}  # the tenant's, not the host's
    assert "clusterIP" not in virtual["spec"]  # input untouched


def test_pending_proxy_copies() -> None:
    now = datetime.datetime(2026, 1, 1, 0, 1, tzinfo=datetime.UTC)
    pending = {
        "metadata": {
            "creationTimestamp": "2026-01-01T00:00:30Z",
            "annotations": {"vcluster.loft.sh/object-uid": ""},
        }
    }
    assert is_pending_proxy_copy(pending, now)
    assert not is_pending_proxy_copy(pending, now + datetime.timedelta(minutes=5))  # abandoned: collectable
    adopted = {"metadata": {**pending["metadata"], "annotations": {"vcluster.loft.sh/object-uid": "u1"}}}
    assert not is_pending_proxy_copy(adopted, now)
