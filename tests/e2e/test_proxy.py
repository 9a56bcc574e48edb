"""The API proxy end to end: a real kubectl talks ONLY to the proxy (never to the virtual API server).

Behind the proxy: the real virtual API server (pass-through, impersonated) and the real host API
server with kwok as the kubelet (exec, attach, logs, port-forward of synced pods). kwok runs exec as a
local command, serves logs and attach from files, and pipes port-forward connections into `cat`.
Everything listens on 127.0.0.1; no test ever dials a pod IP or ClusterIP.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.local.host import cri_log_line
from controlplane.local.tenant import LocalVirtualCluster
from syncer.kube import kubeconfigs, pki
from syncer.translate.names import host_name
from tests.e2e.test_syncer_pods import get_json, wait_running
from tests.support import Kubectl, eventually, kubectl_for, unique_name

pytestmark = pytest.mark.e2e

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.proxy.example.com}
spec:
  group: proxy.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties: {size: {type: integer}}
"""


# ------------------------------------------------------------------------------------------ fixtures


def proxy_server(vcluster: LocalVirtualCluster) -> str:
    return f"https://127.0.0.1:{vcluster.proxy_ports[0]}"


def proxy_kubeconfig(
    vcluster: LocalVirtualCluster, path: Path, *, token: str | None = None, user: str = "admin"
) -> Path:
    """A kubeconfig for the proxy: the virtual server CA, and a client cert (`user`) or a token."""
    if token is None:
        config = vcluster.plane.pki.kubeconfig(proxy_server(vcluster), user)
    else:
        config = kubeconfigs.build(
            server=proxy_server(vcluster),
            ca_pem=vcluster.plane.pki.server_ca.read_bytes(),
            name="token-user",
            token=token,
        )
    return kubeconfigs.write(path, config)


@pytest.fixture(scope="session")
def proxy_kubectl(vcluster: LocalVirtualCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    path = proxy_kubeconfig(vcluster, tmp_path_factory.mktemp("proxy") / "admin.kubeconfig")
    return kubectl_for(vcluster.host.binaries, path)


def proxy_ssl(vcluster: LocalVirtualCluster, *, client_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(vcluster.plane.pki.server_ca))
    if client_cert:
        cert, key = vcluster.plane.pki.client_pair("admin")
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def raw_get(
    vcluster: LocalVirtualCluster,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    client_cert: bool = True,
    method: str = "GET",
) -> tuple[int, bytes]:
    """One HTTPS request to the proxy with exactly the path given (no client-side normalisation)."""
    conn = http_connection(vcluster, client_cert=client_cert)
    try:
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_connection(vcluster: LocalVirtualCluster, *, client_cert: bool = True) -> Any:
    import http.client

    return http.client.HTTPSConnection(
        "127.0.0.1", vcluster.proxy_ports[0], context=proxy_ssl(vcluster, client_cert=client_cert), timeout=30
    )


def run_pod(vc: Kubectl, ns: str, name: str | None = None) -> str:
    name = name or unique_name("p")
    vc("run", name, "--image=registry.invalid/app:1", "-n", ns)
    wait_running(vc, name, ns)
    return name


def status_of(body: bytes) -> dict[str, Any]:
    decoded = json.loads(body)
    assert decoded["kind"] == "Status", decoded
    return decoded  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------- pass-through basics


def test_get_list_apply_delete_core_resources(proxy_kubectl: Kubectl, vc_kubectl: Kubectl, vns: str) -> None:
    proxy_kubectl("create", "configmap", "c1", "-n", vns, "--from-literal=a=1")
    assert json.loads(proxy_kubectl("get", "configmap", "c1", "-n", vns, "-o", "json").stdout)["data"] == {
        "a": "1"
    }
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c2", "namespace": vns},
        "data": {"b": "2"},
    }
    proxy_kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    proxy_kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps({**manifest, "data": {"b": "3"}}))
    names = proxy_kubectl("get", "configmaps", "-n", vns, "-o", "name").stdout.split()
    assert {"configmap/c1", "configmap/c2"} <= set(names)
    # The proxy changed nothing: the virtual API server has the same objects.
    assert json.loads(vc_kubectl("get", "configmap", "c2", "-n", vns, "-o", "json").stdout)["data"] == {
        "b": "3"
    }
    proxy_kubectl("delete", "configmap", "c1", "c2", "-n", vns)
    assert get_json(vc_kubectl, "configmap", "c1", "-n", vns) is None
    # Errors come back unchanged.
    missing = proxy_kubectl("get", "configmap", "nope", "-n", vns, check=False)
    assert missing.returncode == 1 and 'configmaps "nope" not found' in missing.stderr


def test_custom_resources(proxy_kubectl: Kubectl, vns: str) -> None:
    proxy_kubectl("apply", "-f", "-", stdin=CRD)
    eventually(
        lambda: proxy_kubectl("get", "widgets", "-n", vns, check=False).returncode == 0,
        timeout=30,
        what="CRD served",
    )
    widget = {
        "apiVersion": "proxy.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": vns},
        "spec": {"size": 3},
    }
    proxy_kubectl("apply", "-f", "-", stdin=json.dumps(widget))
    got = json.loads(proxy_kubectl("get", "widget", "w1", "-n", vns, "-o", "json").stdout)
    assert got["spec"] == {"size": 3}
    proxy_kubectl("patch", "widget", "w1", "-n", vns, "--type=merge", "-p", '{"spec":{"size":5}}')
    got = json.loads(proxy_kubectl("get", "widget", "w1", "-n", vns, "-o", "json").stdout)
    assert got["spec"] == {"size": 5}
    proxy_kubectl("delete", "widget", "w1", "-n", vns)
    assert proxy_kubectl("get", "widgets", "-n", vns, "-o", "name").stdout.strip() == ""


def test_watch_streams_events_as_they_happen(
    proxy_kubectl: Kubectl, vc_kubectl: Kubectl, vcluster: LocalVirtualCluster, vns: str, tmp_path: Path
) -> None:
    kubeconfig = proxy_kubeconfig(vcluster, tmp_path / "kc")
    argv = [
        vcluster.host.binaries.path("kubectl"),
        f"--kubeconfig={kubeconfig}",
        "get",
        "configmaps",
        "-n",
        vns,
        "--watch",
        "-o",
        "name",
    ]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as watcher:
        lines: list[str] = []
        assert watcher.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(watcher.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        try:
            eventually(
                lambda: "configmap/kube-root-ca.crt" in [x.strip() for x in lines],
                timeout=30,
                what="initial list",
            )
            # Created straight in the virtual cluster: the event must arrive through the open watch.
            vc_kubectl("create", "configmap", "watched", "-n", vns)
            eventually(
                lambda: "configmap/watched" in [x.strip() for x in lines], timeout=15, what="watch event"
            )
        finally:
            watcher.terminate()
            watcher.wait(timeout=10)
            reader.join(timeout=10)


# ------------------------------------------------------------------------------------ authentication


def test_service_account_token_authenticates(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, vns: str, tmp_path: Path
) -> None:
    vc_kubectl("create", "serviceaccount", "reader", "-n", vns)
    vc_kubectl("create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", vns)
    vc_kubectl(
        "create", "rolebinding", "reader", "--role=cm-reader", f"--serviceaccount={vns}:reader", "-n", vns
    )
    vc_kubectl("create", "configmap", "visible", "-n", vns)
    token = vc_kubectl("create", "token", "reader", "-n", vns).stdout.strip()
    kubectl = kubectl_for(vcluster.host.binaries, proxy_kubeconfig(vcluster, tmp_path / "kc", token=token))
    who = json.loads(kubectl("auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{vns}:reader"
    assert "configmap/visible" in kubectl("get", "configmaps", "-n", vns, "-o", "name").stdout
    # RBAC is the virtual cluster's: the same token may not list secrets.
    denied = kubectl("get", "secrets", "-n", vns, check=False)
    assert denied.returncode == 1 and "forbidden" in denied.stderr
    # A garbage token is a 401, not anonymous access.
    bad = kubectl_for(
        vcluster.host.binaries, proxy_kubeconfig(vcluster, tmp_path / "bad", token="not-a-token")
    )
    result = bad("get", "configmaps", "-n", vns, check=False)
    assert result.returncode == 1 and "Unauthorized" in result.stderr


def test_anonymous_gets_what_the_virtual_api_server_gives_anonymous(vcluster: LocalVirtualCluster) -> None:
    status, body = raw_get(vcluster, "/version", client_cert=False)
    assert status == 200 and "gitVersion" in json.loads(body)
    status, body = raw_get(vcluster, "/api/v1/namespaces", client_cert=False)
    assert status == 403 and 'User "system:anonymous"' in status_of(body)["message"]


def test_forged_identity_headers_are_ignored(vcluster: LocalVirtualCluster, vns: str, tmp_path: Path) -> None:
    """A caller who may do nothing cannot become admin with Impersonate-* or X-Remote-* headers."""
    nobody = issue_client_cert(vcluster, tmp_path, "nobody")
    for headers in (
        {"Impersonate-User": "admin", "Impersonate-Group": "system:masters"},
        {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"},
    ):
        status, body = request_as(vcluster, nobody, f"/api/v1/namespaces/{vns}/secrets", headers=headers)
        assert status == 403, body
        assert 'User "nobody"' in status_of(body)["message"]
    status, body = request_as(
        vcluster,
        nobody,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        method="POST",
        headers={"Impersonate-User": "admin", "Content-Type": "application/json"},
        body=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
    )
    assert status == 201, body
    assert json.loads(body)["status"]["userInfo"]["username"] == "nobody"


def issue_client_cert(
    vcluster: LocalVirtualCluster, directory: Path, user: str, groups: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    ca = pki.KeyPair.read(vcluster.plane.pki.client_ca, vcluster.plane.pki.client_ca_key)
    pair = pki.issue(ca, user, organizations=groups, client=True)
    cert, key = directory / f"{user}.crt", directory / f"{user}.key"
    pair.write(cert, key)
    return cert, key


def request_as(
    vcluster: LocalVirtualCluster,
    cert_key: tuple[Path, Path],
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, bytes]:
    import http.client

    ctx = ssl.create_default_context(cafile=str(vcluster.plane.pki.server_ca))
    ctx.load_cert_chain(str(cert_key[0]), str(cert_key[1]))
    conn = http.client.HTTPSConnection("127.0.0.1", vcluster.proxy_ports[0], context=ctx, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ------------------------------------------------------------------ exec, attach, logs, port-forward

SPDY_ONLY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}


@pytest.mark.parametrize("env", [{}, SPDY_ONLY], ids=["websocket", "spdy"])
def test_exec_with_stdin_and_exit_codes(
    proxy_kubectl: Kubectl, vc_kubectl: Kubectl, vns: str, env: dict[str, str]
) -> None:
    pod = run_pod(vc_kubectl, vns)
    out = proxy_kubectl(
        "exec",
        "-i",
        pod,
        "-n",
        vns,
        "--",
        "head",
        "-n1",
        stdin="hello through the proxy\n",
        env=env,
        timeout=30,
    )
    assert out.stdout == "hello through the proxy\n"
    out = proxy_kubectl(
        "exec", pod, "-n", vns, "--", "sh", "-c", "echo out; echo err >&2", env=env, timeout=30
    )
    assert out.stdout == "out\n" and "err" in out.stderr
    # kwok reports a non-zero exit as an error carrying the status (kubectl exits 1, not 3).
    failed = proxy_kubectl(
        "exec", pod, "-n", vns, "--", "sh", "-c", "exit 3", env=env, check=False, timeout=30
    )
    assert failed.returncode != 0 and "exit status 3" in failed.stderr, failed.stderr


def test_exec_protocols_are_what_kubectl_asked_for(
    proxy_kubectl: Kubectl, vc_kubectl: Kubectl, vns: str
) -> None:
    """The proxy negotiates nothing itself: WebSocket (v5) by default, SPDY when kubectl is told to."""
    pod = run_pod(vc_kubectl, vns)
    websocket = proxy_kubectl("exec", pod, "-n", vns, "-v=7", "--", "true", timeout=30)
    assert "v5.channel.k8s.io" in websocket.stderr
    spdy = proxy_kubectl("exec", pod, "-n", vns, "-v=7", "--", "true", env=SPDY_ONLY, timeout=30)
    assert "SPDY/3.1" in spdy.stderr or "X-Stream-Protocol-Version" in spdy.stderr


def test_attach(vc_kubectl: Kubectl, vcluster: LocalVirtualCluster, vns: str, tmp_path: Path) -> None:
    """kwok's attach follows a file from its end: lines appended after attaching must come through."""
    pod = run_pod(vc_kubectl, vns)
    kubeconfig = proxy_kubeconfig(vcluster, tmp_path / "kc")
    argv = [vcluster.host.binaries.path("kubectl"), f"--kubeconfig={kubeconfig}", "attach", pod, "-n", vns]
    marker = unique_name("attached")
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as attached:
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(iter(attached.stdout.readline, "")), daemon=True
        )  # type: ignore[union-attr]
        reader.start()

        def seen() -> bool:
            # Until the stream is up, appended lines are before its starting point: append again.
            with vcluster.host.attach_log_file.open("a") as attach_file:
                attach_file.write(cri_log_line(marker))
            return any(marker in line for line in lines)

        try:
            eventually(seen, timeout=30, interval=0.5, what="attached output")
        finally:
            attached.terminate()
            attached.wait(timeout=10)
            reader.join(timeout=10)


def test_logs_and_follow(
    proxy_kubectl: Kubectl, vc_kubectl: Kubectl, vcluster: LocalVirtualCluster, vns: str, tmp_path: Path
) -> None:
    pod = run_pod(vc_kubectl, vns)
    assert "hello from kwok" in proxy_kubectl("logs", pod, "-n", vns).stdout
    wrong = proxy_kubectl("logs", pod, "-n", vns, "-c", "nope", check=False)
    assert wrong.returncode == 1
    assert host_name(pod, vns, vcluster.name) not in wrong.stderr  # host names never reach the tenant
    kubeconfig = proxy_kubeconfig(vcluster, tmp_path / "kc")
    marker = unique_name("followed")
    argv = [
        vcluster.host.binaries.path("kubectl"),
        f"--kubeconfig={kubeconfig}",
        "logs",
        "-f",
        pod,
        "-n",
        vns,
    ]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as follower:
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True
        )  # type: ignore[union-attr]
        reader.start()
        try:
            eventually(
                lambda: any("hello from kwok" in x for x in lines), timeout=30, what="initial log lines"
            )
            with vcluster.host.pod_log_file.open("a") as log_file:
                log_file.write(cri_log_line(marker))
            eventually(lambda: any(marker in x for x in lines), timeout=30, what="followed log line")
        finally:
            follower.terminate()
            follower.wait(timeout=10)
            reader.join(timeout=10)


@contextlib.contextmanager
def port_forward(
    kubeconfig: Path, vcluster: LocalVirtualCluster, pod: str, ns: str, env: dict[str, str] | None = None
) -> Iterator[int]:
    argv = [
        vcluster.host.binaries.path("kubectl"),
        f"--kubeconfig={kubeconfig}",
        "port-forward",
        pod,
        "-n",
        ns,
        "--address=127.0.0.1",
        ":8080",
    ]
    full_env = {**os.environ, **(env or {})}
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "Forwarding from 127.0.0.1:" in line, line + (proc.stderr.read() if proc.stderr else "")
            yield int(line.split("127.0.0.1:")[1].split()[0])
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def echo_round_trip(port: int, data: bytes) -> bytes:
    """Send `data` through the forwarded port (kwok pipes it into `cat`) and read it all back."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:

        def send() -> None:
            sock.sendall(data)

        sender = threading.Thread(target=send)
        sender.start()
        while len(received) < len(data):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += chunk
        sender.join(timeout=30)
    return bytes(received)


@pytest.mark.parametrize("env", [{}, SPDY_ONLY], ids=["websocket", "spdy"])
def test_port_forward_multi_megabyte_and_concurrent(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, vns: str, tmp_path: Path, env: dict[str, str]
) -> None:
    pod = run_pod(vc_kubectl, vns)
    kubeconfig = proxy_kubeconfig(vcluster, tmp_path / "kc")
    with port_forward(kubeconfig, vcluster, pod, vns, env) as port:
        big = os.urandom(4 * 1024 * 1024)
        assert hashlib.sha256(echo_round_trip(port, big)).digest() == hashlib.sha256(big).digest()
        results: dict[int, bytes] = {}
        payloads = {i: os.urandom(1024 * 1024) for i in range(2)}
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, echo_round_trip(port, payloads[i])))
            for i in payloads
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results == payloads


# -------------------------------------------------------------------------------------------- refusals


def kubectl_as(vcluster: LocalVirtualCluster, tmp_path: Path, user: str) -> Kubectl:
    cert, key = issue_client_cert(vcluster, tmp_path, user)
    config = kubeconfigs.build(
        server=proxy_server(vcluster),
        ca_pem=vcluster.plane.pki.server_ca.read_bytes(),
        name=user,
        client_cert_pem=cert.read_bytes(),
        client_key_pem=key.read_bytes(),
    )
    return kubectl_for(vcluster.host.binaries, kubeconfigs.write(tmp_path / f"{user}.kubeconfig", config))


def test_stream_subresources_need_rbac_in_the_virtual_cluster(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, vns: str, tmp_path: Path
) -> None:
    pod = run_pod(vc_kubectl, vns)
    nobody = kubectl_as(vcluster, tmp_path, unique_name("nobody"))
    for args in (["exec", pod, "--", "true"], ["logs", pod], ["attach", pod]):
        # (namespace first: everything after `--` belongs to the command)
        out = nobody("-n", vns, *args, check=False, timeout=30)
        assert out.returncode != 0 and "forbidden" in out.stderr, (args, out.stderr)
    # `get` on pods/exec is not enough: exec over WebSocket is a GET, but it is authorized as `create`.
    getter_name = unique_name("getter")
    vc_kubectl("create", "role", "exec-get", "--verb=get", "--resource=pods,pods/exec,pods/log", "-n", vns)
    vc_kubectl("create", "rolebinding", "exec-get", "--role=exec-get", f"--user={getter_name}", "-n", vns)
    getter = kubectl_as(vcluster, tmp_path, getter_name)
    out = getter("exec", pod, "-n", vns, "--", "true", check=False, timeout=30)
    assert out.returncode != 0 and "forbidden" in out.stderr and "cannot create" in out.stderr, out.stderr
    assert "hello from kwok" in getter("logs", pod, "-n", vns).stdout  # log needs only get
    # With create, it works.
    vc_kubectl("create", "role", "exec-create", "--verb=create", "--resource=pods/exec", "-n", vns)
    vc_kubectl(
        "create", "rolebinding", "exec-create", "--role=exec-create", f"--user={getter_name}", "-n", vns
    )
    eventually(
        lambda: getter("exec", pod, "-n", vns, "--", "true", check=False, timeout=30).returncode == 0,
        timeout=15,
        what="exec allowed after the RoleBinding",
    )


@pytest.mark.parametrize(
    "labels", [{"vcluster.loft.sh/managed-by": "vc2"}, {}], ids=["other-vcluster", "unmanaged"]
)
def test_host_pods_that_are_not_ours_are_unreachable(
    vcluster: LocalVirtualCluster,
    vc_kubectl: Kubectl,
    host_kubectl: Kubectl,
    proxy_kubectl: Kubectl,
    vns: str,
    labels: dict[str, str],
) -> None:
    """A host pod sitting at the translated name, but not provably our copy, is never exec'd into."""
    name = unique_name("victim")
    hname = host_name(name, vns, vcluster.name)
    foreign = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": hname,
            "namespace": vcluster.namespace,
            "labels": labels,
            # Even claiming to be the copy of exactly this virtual pod does not make it ours.
            "annotations": {
                "vcluster.loft.sh/object-name": name,
                "vcluster.loft.sh/object-namespace": vns,
                "vcluster.loft.sh/object-kind": "Pod",
            },
        },
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]},
    }
    host_kubectl("apply", "-f", "-", stdin=json.dumps(foreign))
    eventually(
        lambda: (
            (get_json(host_kubectl, "pod", hname, "-n", vcluster.namespace) or {})
            .get("status", {})
            .get("phase")
            == "Running"
        ),
        timeout=60,
        what="foreign host pod running",
    )
    vc_kubectl("run", name, "--image=registry.invalid/app:1", "-n", vns)
    eventually(lambda: get_json(vc_kubectl, "pod", name, "-n", vns), what="virtual pod")
    for args in (["exec", name, "--", "true"], ["logs", name]):
        out = proxy_kubectl("-n", vns, *args, check=False, timeout=30)
        assert out.returncode != 0 and "not managed by this virtual cluster" in out.stderr, out.stderr
    host_kubectl("delete", "pod", hname, "-n", vcluster.namespace, "--wait=false")


def test_pod_streams_of_missing_pods_are_404(proxy_kubectl: Kubectl, vns: str) -> None:
    out = proxy_kubectl("logs", "nope", "-n", vns, check=False)
    assert out.returncode == 1 and 'pods "nope" not found' in out.stderr


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nodes/{node}/proxy/stats/../runningpods",
        "/api/v1/nodes/{node}/proxy/stats/%2e%2e/runningpods",
        "/api/v1/nodes/{node}/proxy/stats/%2E%2E/configz",
        "/api/v1/nodes/{node}/proxy//runningpods",
        "/api/v1/nodes/{node}/proxy/./configz",
        "/api/v1/nodes/{node}%2fproxy/configz",
        "/api/v1/nodes/{node}/proxy/%252e%252e/configz",
        "/API/v1/nodes/{node}/proxy/configz",
        "/api/v1/Nodes/{node}/proxy/configz",
        "/api/v1/nodes/{node}/PROXY/configz",
        "/api/v1/namespaces/default/pods/x/EXEC",
        "/api/v1/namespaces/default/pods/x%2fexec",
        "//api/v1/nodes/{node}/proxy/configz",
        "/api/v1/proxy/nodes/{node}/configz",
    ],
)
def test_path_tricks_are_refused(vcluster: LocalVirtualCluster, path: str) -> None:
    status, body = raw_get(vcluster, path.format(node="kwok-node-0"))
    assert status in (400, 403), (status, body)
    assert status_of(body)["code"] == status


def bound_node(vc_kubectl: Kubectl, vns: str) -> tuple[str, str]:
    pod = run_pod(vc_kubectl, vns)
    node = json.loads(vc_kubectl("get", "pod", pod, "-n", vns, "-o", "json").stdout)["spec"]["nodeName"]
    return pod, node


@pytest.mark.parametrize(
    "sub",
    [
        "exec/default/p/c?command=ls",
        "runningpods",
        "configz",
        "logs/",
        "attach/a/b/c",
        "portForward/a/b",
        "metrics/cadvisor",
        "debug/pprof/",
        "checkpoint/a/b/c",
    ],
)
def test_node_proxy_outside_the_allowlist_is_403(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, vns: str, sub: str
) -> None:
    _, node = bound_node(vc_kubectl, vns)
    status, body = raw_get(vcluster, f"/api/v1/nodes/{node}/proxy/{sub}")
    assert status == 403, body
    status, body = raw_get(vcluster, f"/api/v1/nodes/{node}/proxy/healthz", method="POST")
    assert status == 403, body


def test_node_proxy_allowlist_shows_only_this_tenant(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str, tmp_path: Path
) -> None:
    pod, node = bound_node(vc_kubectl, vns)
    # A host pod of nobody's on the same node must not show up.
    outsider = unique_name("outsider")
    host_kubectl(
        "run",
        outsider,
        "--image=registry.invalid/app:1",
        "-n",
        "default",
        f"--overrides={json.dumps({'spec': {'nodeName': node}})}",
    )
    status, body = raw_get(vcluster, f"/api/v1/nodes/{node}/proxy/healthz")
    assert (status, body) == (200, b"ok")
    status, body = raw_get(vcluster, f"/api/v1/nodes/{node}:10250/proxy/pods")
    assert status == 200
    pods = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in json.loads(body)["items"]}
    assert (vns, pod) in pods and not any(outsider in name for _, name in pods)
    status, body = raw_get(vcluster, f"/api/v1/nodes/{node}/proxy/stats/summary")
    assert status == 200
    refs = [p["podRef"] for p in json.loads(body)["pods"]]
    assert {"namespace": vns, "name": pod} in [{"namespace": r["namespace"], "name": r["name"]} for r in refs]
    assert not any(outsider in r["name"] or "-x-" in r["name"] for r in refs)
    status, body = raw_get(vcluster, f"/api/v1/nodes/{node}/proxy/metrics")
    assert status == 200 and b"kubelet_running_pods" in body
    status, body = raw_get(vcluster, f"/api/v1/nodes/{node}/proxy/containerLogs/{vns}/{pod}/{pod}")
    assert status == 200 and b"hello from kwok" in body
    status, body = raw_get(
        vcluster, f"/api/v1/nodes/{node}/proxy/containerLogs/default/{outsider}/{outsider}"
    )
    assert status == 404, body
    status, body = raw_get(vcluster, f"/api/v1/nodes/{node}/proxy/containerLogs/{vns}/{pod}/not-a-container")
    assert status == 404, body
    # And nodes/proxy itself needs RBAC in the virtual cluster.
    nobody = issue_client_cert(vcluster, tmp_path, unique_name("nobody"))
    status, body = request_as(vcluster, nobody, f"/api/v1/nodes/{node}/proxy/healthz")
    assert status == 403, body
    host_kubectl("delete", "pod", outsider, "-n", "default", "--wait=false")


def test_pod_and_service_proxy_go_to_the_virtual_api_server(
    proxy_kubectl: Kubectl, vc_kubectl: Kubectl, vcluster: LocalVirtualCluster, vns: str
) -> None:
    """pods/proxy and services/proxy are passed through: the virtual API server dials the pod IP, which
    is loopback here and refused by the API server itself ("address not allowed") — proof that the
    request reached the tenant pod's address and nothing else."""
    pod = run_pod(vc_kubectl, vns)
    status, body = raw_get(vcluster, f"/api/v1/namespaces/{vns}/pods/{pod}/proxy/")
    assert status == 400 and status_of(body)["message"] == "address not allowed", body
    proxy_kubectl("expose", "pod", pod, "--port=80", "--target-port=8080", "--name=web", "-n", vns)

    # services/proxy likewise reaches the virtual API server's service proxy for this very service
    # (whether it then says "address not allowed" or "no endpoints available" depends on the virtual
    # endpoints, which are not the proxy's business).
    code, answer = raw_get(vcluster, f"/api/v1/namespaces/{vns}/services/web:80/proxy/")
    message = status_of(answer)["message"]
    assert (code, message) in (
        (400, "address not allowed"),
        (503, 'no endpoints available for service "web"'),
    )


def test_in_cluster_names_are_served_by_the_proxy_certificate(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl
) -> None:
    """Pods reach the proxy as `kubernetes.default.svc` at the ClusterIP of virtual default/kubernetes
    (= the syncer's host Service): the serving certificate must be valid for both. The handshake is
    made to 127.0.0.1 with those names as the expected identity (nothing dials the ClusterIP)."""
    host_ip = get_json(host_kubectl, "service", "vcluster", "-n", vcluster.namespace)["spec"]["clusterIP"]  # type: ignore[index]
    eventually(
        lambda: (
            get_json(vc_kubectl, "service", "kubernetes", "-n", "default")["spec"]["clusterIP"] == host_ip
        ),  # type: ignore[index]
        timeout=30,
        what="virtual default/kubernetes pointing at the syncer's host Service",
    )

    def verifies(name: str) -> bool:
        ctx = ssl.create_default_context(cafile=str(vcluster.plane.pki.server_ca))
        try:
            with (
                socket.create_connection(("127.0.0.1", vcluster.proxy_ports[0]), timeout=10) as sock,
                ctx.wrap_socket(sock, server_hostname=name),
            ):
                return True
        except ssl.SSLCertVerificationError:
            return False

    for name in ("kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"):
        assert verifies(name), name
    # The ClusterIP is learnt from the host Service after start-up; the certificate follows.
    eventually(lambda: verifies(host_ip), timeout=30, what="ClusterIP in the proxy certificate")
    assert not verifies("evil.example.com")


# ------------------------------------------------------------------------------------- service create


def test_service_create_gets_the_same_cluster_ip_on_both_sides(
    proxy_kubectl: Kubectl,
    vc_kubectl: Kubectl,
    host_kubectl: Kubectl,
    vcluster: LocalVirtualCluster,
    vns: str,
) -> None:
    proxy_kubectl("create", "service", "nodeport", "web", "--tcp=80:8080", "-n", vns)
    virtual = json.loads(vc_kubectl("get", "service", "web", "-n", vns, "-o", "json").stdout)
    hname = host_name("web", vns, vcluster.name)
    host = get_json(host_kubectl, "service", hname, "-n", vcluster.namespace)
    assert host is not None  # created before the virtual one, not by the syncer afterwards
    assert virtual["spec"]["clusterIP"] == host["spec"]["clusterIP"]
    assert virtual["spec"]["ports"][0]["nodePort"] == host["spec"]["ports"][0]["nodePort"]
    # The syncer adopts the pending host copy (fills in the uid) instead of replacing it.
    eventually(
        lambda: (
            (get_json(host_kubectl, "service", hname, "-n", vcluster.namespace) or {})["metadata"][
                "annotations"
            ].get("vcluster.loft.sh/object-uid")
            == virtual["metadata"]["uid"]
        ),
        timeout=30,
        what="host service adopted by the syncer",
    )
    again = get_json(host_kubectl, "service", hname, "-n", vcluster.namespace)
    assert again is not None and again["metadata"]["uid"] == host["metadata"]["uid"]
    assert (
        json.loads(vc_kubectl("get", "service", "web", "-n", vns, "-o", "json").stdout)["metadata"]["uid"]
        == (virtual["metadata"]["uid"])
    )


def test_service_create_dry_run_and_rollback(
    proxy_kubectl: Kubectl, host_kubectl: Kubectl, vcluster: LocalVirtualCluster, vns: str
) -> None:
    proxy_kubectl("create", "service", "clusterip", "dry", "--tcp=80", "-n", vns, "--dry-run=server")
    assert (
        get_json(host_kubectl, "service", host_name("dry", vns, vcluster.name), "-n", vcluster.namespace)
        is None
    )
    # The virtual create fails (no such namespace): the host service made first is removed again.
    missing_ns = unique_name("missing")
    out = proxy_kubectl("create", "service", "clusterip", "orphan", "--tcp=80", "-n", missing_ns, check=False)
    assert out.returncode == 1 and "not found" in out.stderr
    assert (
        get_json(
            host_kubectl, "service", host_name("orphan", missing_ns, vcluster.name), "-n", vcluster.namespace
        )
        is None
    )


def test_service_create_needs_rbac(
    vcluster: LocalVirtualCluster, vns: str, tmp_path: Path, host_kubectl: Kubectl
) -> None:
    user = kubectl_as(vcluster, tmp_path, unique_name("nobody"))
    out = user("create", "service", "clusterip", "sneaky", "--tcp=80", "-n", vns, check=False)
    assert out.returncode == 1 and "forbidden" in out.stderr
    assert (
        get_json(host_kubectl, "service", host_name("sneaky", vns, vcluster.name), "-n", vcluster.namespace)
        is None
    )
