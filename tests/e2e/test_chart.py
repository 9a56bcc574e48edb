"""The Helm chart installed into the real local host cluster with the real helm binary.

The API server validates every object the chart renders; the scheduler places the StatefulSet pod
on a kwok node, where kwok makes it Running and Ready (containers are simulated: the k3s and syncer
images are never pulled, and probes are not executed). `helm uninstall` must remove everything the
release created. The README's "Install with Helm" commands are run as written, with only the
release and namespace names made unique. An optional k3d test (skipped unless asked for and
possible) runs the real images.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.local.binaries import Binaries
from controlplane.local.host import HostCluster
from controlplane.local.processes import ManagedProcess, ProcessGroup, free_port, wait_until
from controlplane.local.virtual import VirtualControlPlane
from syncer.host_rbac import HOST_ROLE_RULES, STORAGE_CLASS_CLUSTER_RULES
from syncer.kube import kubeconfigs
from tests.support import Kubectl, eventually, kubectl_for, unique_name

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vcluster"
LOCAL_SERVICE_CIDR = "127.96.0.0/16"

Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def helm(binaries: Binaries, host_cluster: HostCluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The real helm against the host cluster; its cache/config/data dirs are private to the tests."""
    if not binaries.helm.is_file():
        raise AssertionError(f"helm is missing in {binaries.directory}: run hack/build-k8s.sh")
    home = tmp_path_factory.mktemp("helm-home")

    def run(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(host_cluster.kubeconfig),
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
        )
        proc = subprocess.run(
            [str(binaries.helm), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    return run


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(kubectl("get", *args, "-o", "json").stdout)
    return out


def exists(kubectl: Kubectl, *args: str) -> bool:
    proc = kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
    assert proc.returncode == 0, proc.stderr
    return bool(proc.stdout.strip())


def kwok_nodes(kubectl: Kubectl) -> set[str]:
    nodes = get_json(kubectl, "nodes", "-l", "type=kwok")["items"]
    return {n["metadata"]["name"] for n in nodes}


def pod_running_and_ready(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    if not exists(kubectl, "pod", name, "-n", namespace):
        return None
    pod = get_json(kubectl, "pod", name, "-n", namespace)
    status = pod.get("status") or {}
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
    containers = {c["name"]: c.get("ready") for c in status.get("containerStatuses") or []}
    if status.get("phase") == "Running" and ready and containers == {"vcluster": True, "syncer": True}:
        return pod
    return None


def release_objects(kubectl: Kubectl, namespace: str, release: str) -> list[str]:
    """Everything labelled with the release (the pod and claim too) in the namespace, and cluster RBAC."""
    selector = f"release={release}"
    namespaced = kubectl(
        "get",
        "statefulsets,pods,services,serviceaccounts,roles,rolebindings,secrets,configmaps,persistentvolumeclaims",
        "-n",
        namespace,
        "-l",
        selector,
        "-o",
        "name",
    ).stdout.split()
    cluster = kubectl("get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name").stdout.split()
    return namespaced + cluster


def assert_uninstalled(kubectl: Kubectl, helm: Helm, namespace: str, release: str) -> None:
    name = release
    for args in [
        ("statefulset", name),
        ("service", name),
        ("service", f"{name}-headless"),
        ("serviceaccount", f"vc-{name}"),
        ("role", f"vc-{name}"),
        ("rolebinding", f"vc-{name}"),
        ("secret", f"sh.helm.release.v1.{release}.v1"),
    ]:
        assert not exists(kubectl, *args, "-n", namespace), f"{args} survived helm uninstall"
    assert not exists(kubectl, "clusterrole", f"vc-{name}-{namespace}")
    assert not exists(kubectl, "clusterrolebinding", f"vc-{name}-{namespace}")
    eventually(
        lambda: not exists(kubectl, "pod", f"{name}-0", "-n", namespace),
        timeout=60,
        what="the virtual cluster's pod to go away",
    )
    assert release_objects(kubectl, namespace, release) == []
    assert json.loads(helm("list", "-n", namespace, "-o", "json").stdout) == []


@pytest.fixture
def restricted_namespace(host_kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace that enforces the "restricted" Pod Security Standard."""
    name = unique_name("chart")
    host_kubectl("create", "namespace", name)
    host_kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    host_kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def _uninstall_quietly(helm: Helm, namespace: str, release: str) -> None:
    helm("uninstall", release, "-n", namespace, "--ignore-not-found", "--wait", check=False)


def test_install_in_a_restricted_namespace_then_uninstall_removes_everything(
    helm: Helm, host_kubectl: Kubectl, restricted_namespace: str
) -> None:
    ns, release = restricted_namespace, unique_name("vc")
    try:
        out = helm(
            "install",
            release,
            "charts/vcluster",
            "-n",
            ns,
            "--set",
            f"serviceCIDR={LOCAL_SERVICE_CIDR}",
            "--set",
            "storage.persistence=false",
            "--set",
            "storageClasses.sync=true",
            "--set",
            "service.type=NodePort",
            "--set",
            "syncer.extraArgs={--disable-sync-resources=ingresses}",
            "--wait",
            "--timeout=3m",
        ).stdout
        # NOTES.txt: where the kubeconfig is and how to reach the API.
        assert f"kubectl -n {ns} get secret vc-{release} -o jsonpath='{{.data.config}}' | base64 -d" in out
        assert f"kubectl -n {ns} port-forward service/{release} 8443:443" in out

        # The pod passed the restricted admission check, was scheduled on a kwok node and is ready.
        pod = eventually(
            lambda: pod_running_and_ready(host_kubectl, ns, f"{release}-0"),
            timeout=90,
            what="the virtual cluster pod to be Running and Ready",
        )
        assert isinstance(pod, dict)
        assert pod["spec"]["nodeName"] in kwok_nodes(host_kubectl)
        assert pod["spec"]["serviceAccountName"] == f"vc-{release}"
        syncer = next(c for c in pod["spec"]["containers"] if c["name"] == "syncer")
        assert syncer["args"][-1] == "--disable-sync-resources=ingresses"
        assert pod["spec"]["volumes"][0] == {"name": "data", "emptyDir": {}}

        # What the API server stored.
        role = get_json(host_kubectl, "role", f"vc-{release}", "-n", ns)
        assert role["rules"] == HOST_ROLE_RULES
        cluster_role = get_json(host_kubectl, "clusterrole", f"vc-{release}-{ns}")
        assert cluster_role["rules"] == STORAGE_CLASS_CLUSTER_RULES
        service = get_json(host_kubectl, "service", release, "-n", ns)
        assert service["spec"]["type"] == "NodePort"
        assert ipaddress.ip_address(service["spec"]["clusterIP"]) in ipaddress.ip_network(LOCAL_SERVICE_CIDR)
        # The Service selects exactly this pod. (Its EndpointSlices stay empty here: every pod IP of
        # the local cluster is loopback, which their validation refuses; so compare the selection.)
        query = ",".join(f"{k}={v}" for k, v in service["spec"]["selector"].items())
        selected = get_json(host_kubectl, "pods", "-n", ns, "-l", query)["items"]
        assert [p["metadata"]["name"] for p in selected] == [f"{release}-0"]
        assert service["spec"]["ports"][0]["targetPort"] == 8443

        # The ServiceAccount has exactly what the Role and ClusterRole grant.
        who = f"--as=system:serviceaccount:{ns}:vc-{release}"
        for verb, resource, allowed in [
            ("create", "pods", True),
            ("create", "pods/exec", True),
            ("delete", "persistentvolumeclaims", True),
            ("update", "leases.coordination.k8s.io", True),
            ("list", "storageclasses.storage.k8s.io", True),
            ("delete", "statefulsets.apps", False),
            ("list", "nodes", False),
            ("create", "storageclasses.storage.k8s.io", False),
        ]:
            proc = host_kubectl("auth", "can-i", verb, resource, "-n", ns, who, check=False)
            assert proc.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, proc.stdout)
        proc = host_kubectl("auth", "can-i", "create", "pods", "-n", "default", who, check=False)
        assert proc.stdout.strip() == "no"

        helm("uninstall", release, "-n", ns, "--wait")
        assert_uninstalled(host_kubectl, helm, ns, release)
    finally:
        _uninstall_quietly(helm, ns, release)


def test_restricted_namespace_refuses_the_pod_without_the_default_security_context(
    helm: Helm, host_kubectl: Kubectl, restricted_namespace: str
) -> None:
    """The admission check the test above passes is real: without the chart's defaults it refuses."""
    ns, release = restricted_namespace, unique_name("vc")
    try:
        helm(
            "install",
            release,
            "charts/vcluster",
            "-n",
            ns,
            "--set",
            f"serviceCIDR={LOCAL_SERVICE_CIDR}",
            "--set",
            "storage.persistence=false",
            "--set-json",
            "podSecurityContext=null",
            "--set-json",
            "securityContext=null",
        )

        def refused() -> bool:
            events = get_json(host_kubectl, "events", "-n", ns, "--field-selector", "reason=FailedCreate")
            return any("violates PodSecurity" in e.get("message", "") for e in events["items"])

        eventually(refused, timeout=60, what="the StatefulSet's pod to be refused by Pod Security admission")
        assert not exists(host_kubectl, "pod", f"{release}-0", "-n", ns)
    finally:
        _uninstall_quietly(helm, ns, release)


def test_persistent_install_binds_a_claim_and_can_delete_it_on_uninstall(
    helm: Helm, host_kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    """volumeClaimTemplates against a pre-made PV (the local cluster has no provisioner)."""
    release = unique_name("vc")
    storage_class = unique_name("vc-chart-test")
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": storage_class},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "persistentVolumeReclaimPolicy": "Retain",
            # Never mounted: kwok simulates the containers.
            "hostPath": {"path": str(tmp_path / "pv"), "type": "DirectoryOrCreate"},
        },
    }
    host_kubectl("apply", "-f", "-", stdin=json.dumps(pv))
    try:
        helm(
            "install",
            release,
            "charts/vcluster",
            "-n",
            namespace,
            "--set",
            f"serviceCIDR={LOCAL_SERVICE_CIDR}",
            "--set",
            f"storage.className={storage_class}",
            "--set",
            "storage.size=1Gi",
            "--set",
            "storage.keepOnUninstall=false",
        )
        claim = f"data-{release}-0"
        eventually(
            lambda: get_json(host_kubectl, "pvc", claim, "-n", namespace)["status"].get("phase") == "Bound",
            timeout=90,
            what="the claim from volumeClaimTemplates to bind",
        )
        assert get_json(host_kubectl, "pvc", claim, "-n", namespace)["spec"]["volumeName"] == storage_class
        pod = eventually(
            lambda: pod_running_and_ready(host_kubectl, namespace, f"{release}-0"),
            timeout=90,
            what="the pod with a claim to be Running and Ready",
        )
        assert isinstance(pod, dict)
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "data")
        assert volume["persistentVolumeClaim"]["claimName"] == claim

        helm("uninstall", release, "-n", namespace, "--wait")
        # keepOnUninstall=false: the StatefulSet owned the claim, so the garbage collector removes it.
        eventually(
            lambda: not exists(host_kubectl, "pvc", claim, "-n", namespace),
            timeout=60,
            what="the claim to be deleted with the StatefulSet",
        )
        assert_uninstalled(host_kubectl, helm, namespace, release)
    finally:
        _uninstall_quietly(helm, namespace, release)
        host_kubectl("delete", "pv", storage_class, "--wait=false", "--ignore-not-found", check=False)


def test_wrong_value_type_fails_install_and_creates_nothing(
    helm: Helm, host_kubectl: Kubectl, namespace: str
) -> None:
    release = unique_name("vc")
    proc = helm(
        "install",
        release,
        "charts/vcluster",
        "-n",
        namespace,
        "--set",
        "storage.persistence=yes",
        check=False,
    )
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert "/storage/persistence" in proc.stderr and "want boolean" in proc.stderr
    assert json.loads(helm("list", "-n", namespace, "-a", "-o", "json").stdout) == []
    assert release_objects(host_kubectl, namespace, release) == []


# ---------------------------------------------------------------------------------------------------
# The pod, emulated: the real syncer with the chart's exact args, as the chart's ServiceAccount.


def _k3s_style_admin_kubeconfig(plane: VirtualControlPlane) -> None:
    """Rewrite the admin kubeconfig as k3s writes server/cred/admin.kubeconfig: file references to
    server/tls/{server-ca,client-admin}.* instead of inline data."""
    cert, key = plane.pki.client_pair("admin")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.pki.server_ca)},
            }
        ],
        "users": [{"name": "user", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [
            {"name": "Default", "context": {"cluster": "local", "namespace": "default", "user": "user"}}
        ],
        "current-context": "Default",
    }
    plane.admin_kubeconfig_path.write_text(yaml.safe_dump(config))


def _readyz(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def test_syncer_runs_with_the_charts_args_and_service_account(
    helm: Helm,
    binaries: Binaries,
    host_cluster: HostCluster,
    host_kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    """What the pod's syncer container does, minus the container: the args the API server stored
    for it (with /data at a local directory laid out as k3s lays it out, and the addresses moved to
    free ports on 127.0.0.1 by appended flags: later flags win, as values.yaml says), host access
    only through a token of the chart's ServiceAccount, a virtual control plane in place of k3s."""
    release = unique_name("vc")
    helm(
        "install",
        release,
        "charts/vcluster",
        "-n",
        namespace,
        "--set",
        f"serviceCIDR={LOCAL_SERVICE_CIDR}",
        "--set",
        "storage.persistence=false",
        "--wait",
    )
    group = ProcessGroup()
    data = tmp_path / "data"
    plane = VirtualControlPlane(data, service_cidr=host_cluster.service_cidr, binaries=binaries)
    try:
        plane.start()
        _k3s_style_admin_kubeconfig(plane)
        sts = get_json(host_kubectl, "statefulset", release, "-n", namespace)
        pod_spec = sts["spec"]["template"]["spec"]
        (syncer,) = [c for c in pod_spec["containers"] if c["name"] == "syncer"]
        assert syncer["command"] == ["vcluster-py"]
        token = host_kubectl(
            "create", "token", pod_spec["serviceAccountName"], "-n", namespace, "--duration=1h"
        ).stdout.strip()
        host_kc = tmp_path / "in-cluster.kubeconfig"
        kubeconfigs.write(
            host_kc,
            kubeconfigs.build(
                server=host_cluster.server,
                ca_pem=host_cluster.pki.server_ca.read_bytes(),
                name="in-cluster",
                token=token,
                namespace=namespace,
            ),
        )
        health, proxy = free_port(), free_port()
        args = [a.replace("=/data/", f"={data}/") for a in syncer["args"]]
        args += [
            f"--host-kubeconfig={host_kc}",
            f"--health-address=127.0.0.1:{health}",
            "--proxy-address=127.0.0.1",
            f"--proxy-port={proxy}",
        ]
        proc = group.start(
            ManagedProcess(
                "chart-syncer", [sys.executable, "-m", "controlplane", *args], tmp_path / "syncer.log"
            )
        )
        wait_until(
            lambda: _readyz(health) == "leader",
            timeout=90,
            what="the syncer (chart args, chart ServiceAccount) to lead",
            watch=[proc, *plane.group.processes],
            interval=0.2,
        )
        # The syncer wrote the user kubeconfig where NOTES.txt says it is.
        secret = eventually(
            lambda: (
                exists(host_kubectl, "secret", f"vc-{release}", "-n", namespace)
                and get_json(host_kubectl, "secret", f"vc-{release}", "-n", namespace)
            ),
            timeout=60,
            what=f"the Secret vc-{release}",
        )
        assert isinstance(secret, dict)
        user_config = yaml.safe_load(base64.b64decode(secret["data"]["config"]))
        # https://localhost:<proxy port>: 8443 in the pod, where NOTES.txt's port-forward targets it.
        assert [c["cluster"]["server"] for c in user_config["clusters"]] == [f"https://localhost:{proxy}"]
        # The virtual `kubernetes` Service took the chart Service's ClusterIP.
        host_ip = get_json(host_kubectl, "service", release, "-n", namespace)["spec"]["clusterIP"]
        virtual_kubectl = kubectl_for(binaries, plane.admin_kubeconfig_path)
        eventually(
            lambda: (
                get_json(virtual_kubectl, "service", "kubernetes", "-n", "default")["spec"]["clusterIP"]
                == host_ip
            ),
            timeout=60,
            what="virtual default/kubernetes to take the chart Service's ClusterIP",
        )
        # The user kubeconfig must stand on its own (k3s' admin kubeconfig names files under /data
        # that a user does not have); then it works through the syncer's proxy, as after NOTES.txt's
        # port-forward.
        cluster, user = user_config["clusters"][0]["cluster"], user_config["users"][0]["user"]
        assert "certificate-authority-data" in cluster and "client-key-data" in user, "not self-contained"
        assert not {"certificate-authority", "client-certificate", "client-key"} & (set(cluster) | set(user))
        user_kubeconfig = tmp_path / "user.kubeconfig"
        user_kubeconfig.write_text(yaml.safe_dump(user_config))
        names = kubectl_for(binaries, user_kubeconfig)("get", "namespaces", "-o", "name").stdout.split()
        assert "namespace/default" in names
        # Uninstall leaves the syncer-written Secret behind, as NOTES.txt says.
        group.stop()
        helm("uninstall", release, "-n", namespace, "--wait")
        assert exists(host_kubectl, "secret", f"vc-{release}", "-n", namespace)
    finally:
        group.stop()
        plane.stop()
        _uninstall_quietly(helm, namespace, release)


# ---------------------------------------------------------------------------------------------------
# README: the "Install with Helm" section works as written against the local host cluster.


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    match = re.search(r"^## Install with Helm\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "README.md has no '## Install with Helm' section"
    block = re.search(r"```sh\n(.*?)```", match.group(1), re.S)
    assert block, "the Install with Helm section has no ```sh block"
    commands, current = [], ""
    for line in block.group(1).splitlines():
        line = re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else ""
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            commands.append(current.strip())
        current = ""
    return commands


def test_readme_install_section_works_as_written(
    helm: Helm, binaries: Binaries, host_cluster: HostCluster, host_kubectl: Kubectl
) -> None:
    commands = readme_commands()
    release, ns = unique_name("my-vc"), unique_name("team-a")
    ran: list[str] = []
    try:
        for command in commands:
            argv = shlex.split(command)
            if argv[0] == "export":
                var, _, value = argv[1].partition("=")
                # The README's environment: hack/up's host kubeconfig and the built binaries;
                # here they are the test session's host cluster and the same binaries.
                if var == "KUBECONFIG":
                    assert value.endswith("/vcluster-py/up/kubeconfig-host.yaml"), value
                elif var == "PATH":
                    assert value.startswith("~/.cache/vcluster-py/bin:"), value
                else:
                    raise AssertionError(f"unexpected export in README: {command}")
                continue
            argv = [a.replace("my-vc", release).replace("team-a", ns) for a in argv]
            if argv[0] == "helm":
                helm(*argv[1:])
            elif argv[0] == "kubectl":
                host_kubectl(*argv[1:], timeout=180)
            else:
                raise AssertionError(f"the test does not know how to run: {command}")
            ran.append(" ".join(argv[:2]))
            if argv[:2] == ["helm", "install"]:
                assert exists(host_kubectl, "statefulset", release, "-n", ns)
            if "rollout" in argv and "status" in argv:
                # kwok made the pod Running and Ready on one of its nodes.
                pod = pod_running_and_ready(host_kubectl, ns, f"{release}-0")
                assert pod and pod["spec"]["nodeName"] in kwok_nodes(host_kubectl)
        assert ran[0] == "helm install", commands
        assert "kubectl -n" in ran, "the section should wait for the pod with kubectl rollout status"
        assert ran[-1] == "helm uninstall", "the section should end by uninstalling"
        assert_uninstalled(host_kubectl, helm, ns, release)
    finally:
        _uninstall_quietly(helm, ns, release)
        host_kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


# ---------------------------------------------------------------------------------------------------
# Optional: the real images on a k3d cluster.


def _k3d_unavailable() -> list[str]:
    missing = []
    if os.environ.get("VCLUSTER_PY_K3D_E2E") != "1":
        missing.append("opt-in VCLUSTER_PY_K3D_E2E=1 not set (the test pulls images from the internet)")
    if not shutil.which("docker"):
        missing.append("docker is not installed")
    elif subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        missing.append("no Docker engine is reachable (docker info fails)")
    if not shutil.which("k3d"):
        missing.append("k3d is not installed")
    return missing


@pytest.mark.timeout(2400)
def test_k3d_runs_the_real_images_and_a_pod_in_the_virtual_cluster(
    binaries: Binaries, tmp_path: Path
) -> None:
    """Build the image, create a k3d cluster, install the chart, run a pod inside the virtual cluster."""
    missing = _k3d_unavailable()
    if missing:
        pytest.skip("k3d end-to-end test skipped: " + "; ".join(missing))
    cluster, image = unique_name("vcpy"), "vcluster-py:k3d-e2e"
    kubeconfig = tmp_path / "k3d.kubeconfig"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HELM_CACHE_HOME": str(tmp_path / "helm")}

    def sh(*argv: str, timeout: float = 600) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
        assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stderr}{proc.stdout}"
        return proc.stdout

    kubectl, helm_bin = binaries.path("kubectl"), str(binaries.helm)
    sh("docker", "build", "-f", "images/Dockerfile", "-t", image, ".", timeout=1200)
    sh("k3d", "cluster", "create", cluster, "--wait", "--kubeconfig-update-default=false")
    try:
        kubeconfig.write_text(sh("k3d", "kubeconfig", "get", cluster))
        sh("k3d", "image", "import", image, "-c", cluster)
        # k3s' default service CIDR.
        sh(
            helm_bin,
            "install",
            "vc",
            "charts/vcluster",
            "-n",
            "team-a",
            "--create-namespace",
            "--set",
            "serviceCIDR=10.43.0.0/16",
            "--set",
            "storage.persistence=false",
            "--set",
            "syncer.image.repository=vcluster-py",
            "--set",
            "syncer.image.tag=k3d-e2e",
            "--set",
            "syncer.image.pullPolicy=Never",
            "--wait",
            "--timeout=10m",
            timeout=700,
        )
        config = eventually(
            lambda: sh(
                kubectl,
                "-n",
                "team-a",
                "get",
                "secret",
                "vc-vc",
                "-o",
                "jsonpath={.data.config}",
                "--ignore-not-found",
            ),
            timeout=300,
            what="the syncer to write the kubeconfig Secret",
        )
        virtual_kubeconfig = tmp_path / "virtual.kubeconfig"
        virtual_kubeconfig.write_text(base64.b64decode(str(config)).decode())
        forward = subprocess.Popen(
            [kubectl, "-n", "team-a", "port-forward", "service/vc", "8443:443"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert forward.stdout is not None
            assert "Forwarding from" in forward.stdout.readline()
            vk = [kubectl, f"--kubeconfig={virtual_kubeconfig}"]
            sh(*vk, "run", "web", "--image=nginx:alpine", "--restart=Never")
            sh(*vk, "wait", "--for=condition=Ready", "pod/web", "--timeout=300s", timeout=320)
            host_pods = sh(kubectl, "-n", "team-a", "get", "pods", "-o", "name")
            assert "pod/web-x-default-x-vc" in host_pods
        finally:
            forward.terminate()
            forward.wait(timeout=30)
    finally:
        subprocess.run(["k3d", "cluster", "delete", cluster], capture_output=True, timeout=300)
