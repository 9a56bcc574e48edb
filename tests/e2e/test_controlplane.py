"""The control plane end to end: CRDs, controller (local driver), CLI and management API on a real host.

One controller subprocess serves the whole module; the seed documents' example instance is created with
`kubectl create -f` and then used, slept, woken and deleted in order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.local.host import HostCluster
from tests.e2e.controlplane_support import (
    PNS,
    PROJECT,
    ControlPlane,
    cli,
    controlplane,
    ensure_project,
    get_json,
    hk,
    legacy_cluster,
    token,
)
from tests.e2e.controlplane_support import api as _api
from tests.support import Kubectl, eventually, kubectl_for, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
__all__ = ["controlplane", "hk"]  # module-scoped fixtures used here

SEED_VCI = """\
apiVersion: management.loft.sh/v1
kind: VirtualClusterInstance
metadata:
  creationTimestamp: null
  name: my-virtual-cluster
  namespace: loft-p-my-project
spec:
  clusterRef: {}
  displayName: my-display-name
  owner:
    user: my-user
  parameters: 'my-parameter: my-value'
  templateRef:
    name: my-virtual-cluster-template
status: {}
"""
TEMPLATE = """\
apiVersion: management.loft.sh/v1
kind: VirtualClusterTemplate
metadata:
  name: my-virtual-cluster-template
spec:
  displayName: seed template
  parameters:
  - variable: my-parameter
    type: string
    required: true
    validation: "^my-"
  versions:
  - version: 1.0.0
    parameters:
    - variable: my-parameter
      required: true
    template:
      helmRelease:
        values: |
          syncer:
            extraArgs: ["--disable-sync-resources=ingresses"]
      spaceTemplate:
        metadata:
          labels:
            param: "{{ .Values.my-parameter }}"
            old: "true"
  - version: 1.1.0
    parameters:
    - variable: my-parameter
      required: true
      validation: "^my-"
    template:
      helmRelease:
        values: |
          syncer:
            extraArgs: ["--disable-sync-resources=ingresses"]
      spaceTemplate:
        metadata:
          labels:
            param: "{{ .Values.my-parameter }}"
            project: "{{ .Values.loft.project }}"
"""
HOST_NS = "loft-my-project-v-my-virtual-cluster"


@pytest.fixture(scope="module")
def user_kubeconfig(host_cluster: HostCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "config"
    shutil.copyfile(host_cluster.kubeconfig, path)
    return path


def phase(kubectl: Kubectl, name: str) -> dict[str, Any]:
    obj = get_json(kubectl, "virtualclusterinstances.management.loft.sh", name, "-n", PNS)
    return dict(obj.get("status") or {})


def wait_phase(
    kubectl: Kubectl, cp: ControlPlane, name: str, want: str, timeout: float = 300
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        st = phase(kubectl, name)
        return st if st.get("phase") == want else None

    try:
        return eventually(check, timeout=timeout, interval=1, what=f"{name} {want}")  # type: ignore[return-value]
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nstatus: {phase(kubectl, name)}\ncontroller log:\n{cp.log_tail()}"
        ) from None


def test_crds_installed_and_project_namespace(hk: Kubectl) -> None:
    crds = hk("get", "crd", "-o", "name").stdout
    for plural in (
        "virtualclusterinstances",
        "spaceinstances",
        "virtualclustertemplates",
        "spacetemplates",
        "projects",
    ):
        assert f"{plural}.management.loft.sh" in crds
    ensure_project(hk)


def test_seed_instance_becomes_ready(hk: Kubectl, controlplane: ControlPlane) -> None:
    hk("create", "-f", "-", stdin=TEMPLATE)
    hk("create", "-f", "-", stdin=SEED_VCI)
    st = wait_phase(hk, controlplane, "my-virtual-cluster", "Ready")
    types = {c["type"]: c["status"] for c in st["conditions"]}
    for cond in ("TemplateResolved", "SpaceReady", "VirtualClusterDeployed", "VirtualClusterReady"):
        assert types.get(cond) == "True", st
    assert st["deployHash"]
    spec = get_json(hk, "virtualclusterinstances.management.loft.sh", "my-virtual-cluster", "-n", PNS)["spec"]
    assert spec["clusterRef"]["namespace"] == HOST_NS
    assert spec["clusterRef"]["virtualCluster"] == "my-virtual-cluster"
    labels = get_json(hk, "namespace", HOST_NS)["metadata"]["labels"]
    assert labels["loft.sh/vcluster-instance-name"] == "my-virtual-cluster"
    assert labels["loft.sh/vcluster-instance-project"] == PROJECT
    assert labels["param"] == "my-value"  # rendered from the parameters, latest version (1.1.0)
    assert labels["project"] == PROJECT
    # printer columns
    assert "Ready" in hk("get", "vci", "-n", PNS).stdout


def test_use_then_pod_runs_in_host_namespace_ingress_not_synced(
    hk: Kubectl, controlplane: ControlPlane, user_kubeconfig: Path, binaries: Any
) -> None:
    out = cli("use", "vcluster", "my-virtual-cluster", "--project", PROJECT, kubeconfig=user_kubeconfig)
    assert "vcluster-py_my-virtual-cluster_my-project" in out.stdout
    vk = kubectl_for(binaries, user_kubeconfig)
    assert vk("config", "current-context").stdout.strip() == "vcluster-py_my-virtual-cluster_my-project"
    vk("run", "web", "--image=nginx", "-n", "default")
    vk("create", "configmap", "kept", "-n", "default", "--from-literal=a=b")
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    rule = {
        "host": "web.example",
        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
    }
    ingress = json.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"rules": [rule]},
        }
    )
    vk("apply", "-f", "-", stdin=ingress)
    eventually(
        lambda: "web" in hk("get", "pods", "-n", HOST_NS, "-o", "name").stdout,
        timeout=120,
        what="virtual pod synced into the host namespace",
    )
    pods = get_json(hk, "pods", "-n", HOST_NS)["items"]
    assert any(
        p["metadata"].get("labels", {}).get("vcluster.loft.sh/managed-by") == "my-virtual-cluster"
        for p in pods
    )
    # the ingress stays virtual: --disable-sync-resources=ingresses from the template values
    assert hk("get", "ingresses", "-n", HOST_NS, "-o", "name").stdout.strip() == ""
    # list shows it; the CLI still reaches the management cluster through the remembered context
    assert "my-virtual-cluster" in cli("list", "vclusters", kubeconfig=user_kubeconfig).stdout


def test_unknown_disable_sync_resource_fails_with_reason(hk: Kubectl, controlplane: ControlPlane) -> None:
    name = unique_name("bad")
    vci = {
        "apiVersion": "management.loft.sh/v1",
        "kind": "VirtualClusterInstance",
        "metadata": {"name": name, "namespace": PNS},
        "spec": {
            "template": {
                "helmRelease": {
                    "values": "syncer:\n  extraArgs: ['--disable-sync-resources=ingresses,bogusthings']\n"
                }
            }
        },
    }
    hk("create", "-f", "-", stdin=json.dumps(vci))
    st = wait_phase(hk, controlplane, name, "Failed", timeout=60)
    assert st["reason"] == "InvalidSyncerArgs"
    assert "bogusthings" in st["message"]
    # nothing deployed: no host namespace
    assert hk("get", "namespace", f"loft-{PROJECT}-v-{name}", check=False).returncode != 0
    hk("delete", "vci", name, "-n", PNS, "--wait=true", timeout=60)


def test_sleep_and_wake(
    hk: Kubectl, controlplane: ControlPlane, user_kubeconfig: Path, binaries: Any
) -> None:
    cli("sleep", "vcluster", "my-virtual-cluster", "--project", PROJECT, "--wait", kubeconfig=user_kubeconfig)
    assert phase(hk, "my-virtual-cluster")["phase"] == "Sleeping"
    eventually(
        lambda: "web" not in hk("get", "pods", "-n", HOST_NS, "-o", "name").stdout,
        timeout=60,
        what="synced pods gone while sleeping",
    )
    assert not subprocess.run(
        ["pgrep", "-f", f"{controlplane.state}/data/{HOST_NS}/"], capture_output=True, text=True
    ).stdout.strip(), "processes still running while asleep"
    cli(
        "wakeup", "vcluster", "my-virtual-cluster", "--project", PROJECT, "--wait", kubeconfig=user_kubeconfig
    )
    assert phase(hk, "my-virtual-cluster")["phase"] == "Ready"
    # data kept: the virtual objects survive (a bare pod is gone with its host copy, as in vcluster),
    # and the kube-context `use` added before the sleep still works (the proxy keeps its port).
    vk = kubectl_for(binaries, user_kubeconfig)
    ctx = f"--context=vcluster-py_my-virtual-cluster_{PROJECT}"
    eventually(
        lambda: vk(ctx, "get", "configmap", "kept", "-n", "default", check=False).returncode == 0,
        timeout=120,
        what="virtual data kept across sleep",
    )


def test_management_api_rbac_and_use(hk: Kubectl, controlplane: ControlPlane) -> None:
    reader = token(hk, "mgmt-reader")
    hk(
        "create",
        "role",
        "vci-reader",
        "-n",
        PNS,
        "--verb=get,list,watch,patch",
        "--resource=virtualclusterinstances.management.loft.sh",
    )
    hk(
        "create",
        "rolebinding",
        "vci-reader",
        "-n",
        PNS,
        "--role=vci-reader",
        "--serviceaccount=default:mgmt-reader",
    )
    base = f"/namespaces/{PNS}/virtualclusterinstances"
    code, body = _api(controlplane, "GET", base, reader)
    assert code == 200 and any(i["metadata"]["name"] == "my-virtual-cluster" for i in body["items"])
    code, body = _api(controlplane, "GET", base + "/my-virtual-cluster", reader)
    assert code == 200 and body["spec"]["clusterRef"]["namespace"] == HOST_NS
    code, _ = _api(controlplane, "GET", base, "not-a-token")
    assert code == 401
    # the seed's json-patch example
    code, body = _api(
        controlplane,
        "PATCH",
        base + "/my-virtual-cluster",
        reader,
        b'[{"op": "add", "path": "/metadata/annotations/my-annotation", "value": "my-value"}]',
        "application/json-patch+json",
    )
    assert code == 200, body
    assert body["metadata"]["annotations"]["my-annotation"] == "my-value"
    # create/delete are forbidden for the reader
    new = yaml.safe_dump(
        {
            "apiVersion": "management.loft.sh/v1",
            "kind": "VirtualClusterInstance",
            "metadata": {"name": "x", "namespace": PNS},
            "spec": {},
        }
    ).encode()
    code, _ = _api(controlplane, "POST", base, reader, new, "application/yaml")
    assert code == 403
    code, _ = _api(controlplane, "DELETE", base + "/my-virtual-cluster", reader)
    assert code == 403
    # kubeconfig requires `use`
    code, _ = _api(controlplane, "POST", base + "/my-virtual-cluster/kubeconfig", reader, b"{}")
    assert code == 403
    # kubectl create role refuses the non-standard verb, so the Role is written out (as with Loft)
    use_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "vci-use", "namespace": PNS},
        "rules": [
            {"apiGroups": ["management.loft.sh"], "resources": ["virtualclusterinstances"], "verbs": ["use"]}
        ],
    }
    hk("apply", "-f", "-", stdin=json.dumps(use_role))
    hk(
        "create",
        "rolebinding",
        "vci-use",
        "-n",
        PNS,
        "--role=vci-use",
        "--serviceaccount=default:mgmt-reader",
    )
    code, body = _api(controlplane, "POST", base + "/my-virtual-cluster/kubeconfig", reader, b"{}")
    assert code == 200 and "clusters" in yaml.safe_load(body["status"]["kubeConfig"])
    # an admin (bound to cluster-admin) creates and deletes via the seed's YAML body
    admin = token(hk, "mgmt-admin")
    hk(
        "create",
        "clusterrolebinding",
        "mgmt-admin",
        "--clusterrole=cluster-admin",
        "--serviceaccount=default:mgmt-admin",
    )
    code, body = _api(controlplane, "POST", base, admin, new, "application/yaml")
    assert code == 201, body
    code, body = _api(controlplane, "DELETE", base + "/x", admin)
    assert code == 200, body


def test_import_existing_virtual_cluster(
    hk: Kubectl, controlplane: ControlPlane, host_cluster: HostCluster, tmp_path: Path
) -> None:
    existing = legacy_cluster(host_cluster, tmp_path / "legacy")
    ns = existing.namespace
    existing.start()
    try:
        admin = token(hk, "mgmt-admin")
        body = yaml.safe_dump(
            {
                "apiVersion": "management.loft.sh/v1",
                "kind": "ProjectImportVirtualCluster",
                "sourceVirtualCluster": {"name": "legacy", "namespace": ns, "importName": "adopted"},
            }
        )
        code, resp = _api(
            controlplane,
            "POST",
            f"/projects/{PROJECT}/importvirtualcluster",
            admin,
            body.encode(),
            "application/yaml",
        )
        assert code == 200, resp
        wait_phase(hk, controlplane, "adopted", "Ready", timeout=120)
        pids = existing.pids()
        hk("delete", "vci", "adopted", "-n", PNS, timeout=120)
        # not reinstalled, not uninstalled: the same processes, the namespace stays
        assert existing.pids() == pids and all(p for p in pids)
        assert hk("get", "namespace", ns, check=False).returncode == 0
    finally:
        existing.stop()
        hk("delete", "namespace", ns, "--wait=false", check=False)


def test_delete_leaves_nothing_behind(hk: Kubectl, controlplane: ControlPlane, user_kubeconfig: Path) -> None:
    cli(
        "delete", "vcluster", "my-virtual-cluster", "--project", PROJECT, "--wait", kubeconfig=user_kubeconfig
    )
    config = yaml.safe_load(user_kubeconfig.read_text())
    assert not any(c["name"].startswith("vcluster-py_") for c in config["contexts"])
    assert not config["current-context"].startswith("vcluster-py_")
    eventually(
        lambda: hk("get", "namespace", HOST_NS, check=False).returncode != 0,
        timeout=180,
        what="host namespace deleted",
    )
    assert not subprocess.run(
        ["pgrep", "-f", f"{controlplane.state}/data/{HOST_NS}/"], capture_output=True, text=True
    ).stdout.strip()
