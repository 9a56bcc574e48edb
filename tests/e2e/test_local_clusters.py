"""The foundation: real local clusters behave like real clusters.

Host: a pod runs on a kwok node; the real kubectl's logs, exec and port-forward reach kwok through
the host API server. Virtual control plane: CRDs, RBAC and namespaces are served, the controller
manager turns a Deployment into a ReplicaSet and Pods, a Service gets a ClusterIP from the host's
service CIDR. Stopping leaves no process and no port behind.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from controlplane.local.binaries import Binaries
from controlplane.local.host import HostCluster, cri_log_line
from controlplane.local.processes import port_open
from controlplane.local.virtual import VirtualControlPlane
from tests.support import Kubectl, eventually, kubectl_for, unique_name

pytestmark = pytest.mark.e2e

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
spec:
  containers:
  - name: app
    image: registry.invalid/app:1
    ports:
    - containerPort: 8080
"""


def _running_pod(kubectl: Kubectl, namespace: str) -> dict:
    name = unique_name("pod")
    kubectl("apply", "-f", "-", stdin=POD.format(name=name, namespace=namespace))

    def running() -> dict | None:
        pod = json.loads(kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)
        return pod if pod.get("status", {}).get("phase") == "Running" and pod["status"].get("podIP") else None

    return eventually(running, timeout=60, what=f"pod {name} Running")  # type: ignore[return-value]


def test_host_pod_runs_on_a_kwok_node_with_a_loopback_ip(
    host_cluster: HostCluster, host_kubectl: Kubectl, namespace: str
) -> None:
    pod = _running_pod(host_kubectl, namespace)
    assert pod["spec"]["nodeName"] in host_cluster.node_names
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(host_cluster.pod_cidr)
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True"


def test_kubectl_logs_exec_and_port_forward_reach_kwok(
    host_cluster: HostCluster, host_kubectl: Kubectl, namespace: str
) -> None:
    name = _running_pod(host_kubectl, namespace)["metadata"]["name"]

    logs = host_kubectl("logs", name, "-n", namespace).stdout
    assert "hello from kwok" in logs

    # Default protocol (WebSocket v5 through the API server), then legacy SPDY.
    out = host_kubectl("exec", name, "-n", namespace, "--", "echo", "hi-from-exec")
    assert out.stdout.strip() == "hi-from-exec"
    out = host_kubectl(
        "exec",
        name,
        "-n",
        namespace,
        "--",
        "sh",
        "-c",
        "echo $KWOK_EXEC",
        env={"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"},
    )
    assert out.stdout.strip() == "1"
    out = host_kubectl("exec", "-i", name, "-n", namespace, "--", "head", "-n1", stdin="round-trip\n")
    assert out.stdout.strip() == "round-trip"

    _assert_port_forward_echo(host_cluster, host_cluster.kubeconfig, name, namespace)


def _assert_port_forward_echo(host_cluster: HostCluster, kubeconfig: Path, pod: str, namespace: str) -> None:
    proc = subprocess.Popen(
        [
            host_cluster.binaries.path("kubectl"),
            f"--kubeconfig={kubeconfig}",
            "port-forward",
            "-n",
            namespace,
            f"pod/{pod}",
            ":8080",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:NNNNN -> 8080"
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        stderr = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
        assert match, f"unexpected port-forward output: {line!r} {stderr}"
        payload = os.urandom(256 * 1024)
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=30) as conn:
            conn.sendall(payload)
            received = bytearray()
            while len(received) < len(payload):
                chunk = conn.recv(65536)
                assert chunk, "connection closed before the echo came back"
                received += chunk
        assert bytes(received) == payload
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_logs_follow_sees_new_lines(host_cluster: HostCluster, host_kubectl: Kubectl, namespace: str) -> None:
    name = _running_pod(host_kubectl, namespace)["metadata"]["name"]
    marker = unique_name("line")
    proc = subprocess.Popen(
        [
            host_cluster.binaries.path("kubectl"),
            f"--kubeconfig={host_cluster.kubeconfig}",
            "logs",
            "-f",
            name,
            "-n",
            namespace,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "hello from kwok" in proc.stdout.readline()
        with host_cluster.pod_log_file.open("a") as f:
            f.write(cri_log_line(marker))
        assert marker in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


WIDGET = """
apiVersion: example.com/v1
kind: Widget
metadata: {{name: w1, namespace: {namespace}}}
spec: {{size: 3}}
"""


def test_virtual_control_plane_serves_crds_rbac_and_namespaces(virtual_kubectl: Kubectl) -> None:
    ns = unique_name("v")
    virtual_kubectl("create", "namespace", ns)
    virtual_kubectl("apply", "-f", "-", stdin=CRD)
    virtual_kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=30s")
    virtual_kubectl(
        "apply",
        "-f",
        "-",
        stdin=WIDGET.format(namespace=ns),
    )
    assert (
        json.loads(virtual_kubectl("get", "widget", "w1", "-n", ns, "-o", "json").stdout)["spec"]["size"] == 3
    )
    virtual_kubectl("create", "role", "reader", "--verb=get", "--resource=pods", "-n", ns)
    virtual_kubectl("create", "rolebinding", "reader", "--role=reader", "--user=alice", "-n", ns)
    can = virtual_kubectl("auth", "can-i", "get", "pods", "-n", ns, "--as=alice", check=False)
    cannot = virtual_kubectl("auth", "can-i", "delete", "pods", "-n", ns, "--as=alice", check=False)
    assert can.stdout.strip() == "yes"
    assert cannot.stdout.strip() == "no"


def test_virtual_controller_manager_and_service_cidr(
    virtual_kubectl: Kubectl, host_cluster: HostCluster
) -> None:
    ns = unique_name("v")
    virtual_kubectl("create", "namespace", ns)
    virtual_kubectl("create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2", "-n", ns)

    def pods() -> list[dict]:
        items = json.loads(virtual_kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
        return items if len(items) == 2 else []

    eventually(pods, timeout=60, what="Deployment → ReplicaSet → 2 Pods")
    rs = json.loads(virtual_kubectl("get", "replicasets", "-n", ns, "-o", "json").stdout)["items"]
    assert len(rs) == 1 and rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    virtual_kubectl("create", "service", "clusterip", "web", "--tcp=80:8080", "-n", ns)
    svc = json.loads(virtual_kubectl("get", "service", "web", "-n", ns, "-o", "json").stdout)
    assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in ipaddress.ip_network(host_cluster.service_cidr)


def test_stop_leaves_no_process_or_port(tmp_path: Path, binaries: Binaries) -> None:
    plane = VirtualControlPlane(tmp_path / "data", binaries=binaries)
    plane.start()
    pids, port = plane.pids(), plane.port
    assert pids and port_open(port)
    for expected in (
        plane.pki.server_ca,
        plane.pki.client_ca,
        plane.pki.service_key,
        plane.admin_kubeconfig_path,
    ):
        assert expected.is_file(), expected
    plane.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not port_open(port)


def test_a_process_that_dies_raises_with_its_log(tmp_path: Path, binaries: Binaries) -> None:
    from controlplane.local.processes import ManagedProcess, ProcessFailed, wait_until

    proc = ManagedProcess(
        "broken-apiserver", [binaries.path("kube-apiserver"), "--no-such-flag"], tmp_path / "x.log"
    )
    proc.start()
    with pytest.raises(ProcessFailed, match="no-such-flag"):
        wait_until(lambda: False, timeout=30, what="never", watch=[proc])


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def test_up_runs_host_virtual_cluster_and_syncer_and_ctrl_c_stops_everything(
    tmp_path: Path, binaries: Binaries
) -> None:
    import signal
    import sys

    state = tmp_path / "up-state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlplane", "up", f"--state-dir={state}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = ""
        for line in proc.stdout:
            seen += line
            if "Ctrl-C stops everything" in line:
                break
        assert "vcluster-py is up" in seen, seen
        children = _processes_mentioning(str(state))
        names = " ".join(
            Path(f"/proc/{p}/comm").read_text().strip() for p in children if Path(f"/proc/{p}").exists()
        )
        for expected in ("etcd", "kube-apiserver", "kwok", "kine", "python"):
            assert expected in names, names
        vkc = state / "kubeconfig-vcluster.yaml"
        kubectl = kubectl_for(binaries, vkc)
        kubectl("run", "from-up", "--image=registry.invalid/app:1")
        host = kubectl_for(binaries, state / "kubeconfig-host.yaml")
        eventually(
            lambda: "from-up" in host("get", "pods", "-n", "vcluster", "-o", "name").stdout,
            timeout=60,
            what="the syncer started by `up` copies a pod to the host",
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=180) == 0  # an orderly stop of ~12 processes; generous for a loaded CI
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    eventually(lambda: not _processes_mentioning(str(state)), timeout=30, what="no process of `up` left")
