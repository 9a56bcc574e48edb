"""More of the control plane end to end (local driver): SpaceInstance, template objects inside the virtual
cluster, the management API's watch/update/deletecollection, and the CLI's `create --wait` and `import`.

One controller subprocess serves the module (tests/e2e/controlplane_support.py).
"""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.local.binaries import Binaries
from controlplane.local.host import HostCluster
from tests.e2e.controlplane_support import (
    API_PREFIX,
    INSECURE,
    PNS,
    PROJECT,
    ControlPlane,
    admin_token,
    api,
    cli,
    controlplane_fixture,
    ensure_project,
    exists,
    get_json,
    legacy_cluster,
    wait_phase,
)
from tests.support import Kubectl, eventually, kubectl_for, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# The seed document's SpaceInstance example, as written (created with `kubectl create -f ... -n`).
SEED_SPACE = """\
apiVersion: management.loft.sh/v1
kind: SpaceInstance
metadata:
  creationTimestamp: null
  name: my-space
  namespace: loft-p-my-project
spec:
  clusterRef: {}
  displayName: my-display-name
  owner:
    user: my-user
  parameters: 'my-parameter: my-value'
  templateRef:
    name: my-space-template
status: {}
"""
SPACE_TEMPLATE = """\
apiVersion: management.loft.sh/v1
kind: SpaceTemplate
metadata:
  name: my-space-template
spec:
  displayName: seed space template
  parameters:
  - variable: my-parameter
    type: string
    required: true
  template:
    metadata:
      labels:
        param: "{{ .Values.my-parameter }}"
    objects: |
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: space-settings
      data:
        param: "{{ .Values.my-parameter }}"
        project: "{{ .Values.loft.project }}"
      ---
      apiVersion: v1
      kind: ServiceAccount
      metadata:
        name: space-robot
"""
OBJECTS_TEMPLATE = """\
apiVersion: management.loft.sh/v1
kind: VirtualClusterTemplate
metadata:
  name: with-objects
spec:
  parameters:
  - variable: greeting
    type: string
    required: true
  template:
    objects: |
      apiVersion: v1
      kind: Namespace
      metadata:
        name: team-a
      ---
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: from-template
        namespace: team-a
      data:
        greeting: "{{ .Values.greeting }}"
      ---
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: in-default
      data:
        vcluster: "{{ .Values.loft.virtualClusterName }}"
"""


@pytest.fixture(scope="module")
def controlplane(
    host_cluster: HostCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    yield from controlplane_fixture(host_cluster, tmp_path_factory.mktemp("controlplane-more"))


@pytest.fixture(scope="module")
def hk(host_kubectl: Kubectl, controlplane: ControlPlane) -> Kubectl:
    ensure_project(host_kubectl)
    return host_kubectl


@pytest.fixture
def user_kubeconfig(host_cluster: HostCluster, tmp_path: Path) -> Path:
    path = tmp_path / "user-config"
    shutil.copyfile(host_cluster.kubeconfig, path)
    return path


def _ns_gone(hk: Kubectl, ns: str) -> None:
    eventually(
        lambda: hk("get", "namespace", ns, check=False).returncode != 0,
        timeout=180,
        what=f"namespace {ns} deleted",
    )


# --- SpaceInstance


def test_seed_space_instance_namespace_objects_and_delete(hk: Kubectl, controlplane: ControlPlane) -> None:
    hk("create", "-f", "-", stdin=SPACE_TEMPLATE)
    hk("create", "-f", "-", "-n", PNS, stdin=SEED_SPACE)
    st = wait_phase(hk, controlplane, "my-space", "Ready", timeout=120, kind="spaceinstances")
    types = {c["type"]: c["status"] for c in st["conditions"]}
    assert types.get("TemplateResolved") == "True" and types.get("SpaceReady") == "True", st
    spec = get_json(hk, "spaceinstances.management.loft.sh", "my-space", "-n", PNS)["spec"]
    space_ns = spec["clusterRef"]["namespace"]
    assert space_ns == f"loft-{PROJECT}-s-my-space"
    labels = get_json(hk, "namespace", space_ns)["metadata"]["labels"]
    assert labels["loft.sh/space-instance-name"] == "my-space"
    assert labels["loft.sh/space-instance-namespace"] == PNS
    assert labels["loft.sh/project"] == PROJECT
    assert labels["param"] == "my-value"
    # the template's objects, rendered with the parameters, in the space's namespace
    cm = get_json(hk, "configmap", "space-settings", "-n", space_ns)
    assert cm["data"] == {"param": "my-value", "project": PROJECT}
    assert exists(hk, "serviceaccount", "space-robot", "-n", space_ns)
    assert st["spaceObjects"]["lastAppliedObjects"].count("kind:") == 2
    assert "Ready" in hk("get", "spaceinstances.management.loft.sh", "-n", PNS).stdout

    hk("delete", "spaceinstances.management.loft.sh", "my-space", "-n", PNS, "--wait=true", timeout=120)
    _ns_gone(hk, space_ns)


def test_space_instance_preserve_namespace_on_deletion(hk: Kubectl, controlplane: ControlPlane) -> None:
    name = unique_name("keep")
    space = {
        "apiVersion": "management.loft.sh/v1",
        "kind": "SpaceInstance",
        "metadata": {
            "name": name,
            "namespace": PNS,
            "annotations": {"loft.sh/preserve-namespace-on-deletion": "true"},
        },
        "spec": {"templateRef": {"name": "my-space-template"}, "parameters": "my-parameter: kept"},
    }
    hk("create", "-f", "-", stdin=json.dumps(space))
    wait_phase(hk, controlplane, name, "Ready", timeout=120, kind="spaceinstances")
    space_ns = f"loft-{PROJECT}-s-{name}"
    assert get_json(hk, "configmap", "space-settings", "-n", space_ns)["data"]["param"] == "kept"
    try:
        hk("delete", "spaceinstances.management.loft.sh", name, "-n", PNS, "--wait=true", timeout=120)
        assert not exists(hk, "spaceinstances.management.loft.sh", name, "-n", PNS)
        ns = get_json(hk, "namespace", space_ns)
        assert ns["status"]["phase"] == "Active" and not ns["metadata"].get("deletionTimestamp")
    finally:
        hk("delete", "namespace", space_ns, "--wait=false", "--ignore-not-found", check=False)


# --- template objects inside the virtual cluster, CLI create --wait


def test_cli_create_with_template_objects_inside_virtual_cluster(
    hk: Kubectl, controlplane: ControlPlane, user_kubeconfig: Path, binaries: Binaries
) -> None:
    hk("apply", "-f", "-", stdin=OBJECTS_TEMPLATE)
    name = unique_name("objs")
    host_ns = f"loft-{PROJECT}-v-{name}"
    out = cli(
        "create",
        "vcluster",
        name,
        "--project",
        PROJECT,
        "--template",
        "with-objects",
        "--set",
        "greeting=hello-there",
        "--wait",
        kubeconfig=user_kubeconfig,
        timeout=400,
    )
    # progress on stderr ("[name] Pending: Deploying ..."), the outcome on stdout
    assert f"[{name}] Pending" in out.stderr, out.stderr
    assert f"[{name}] Ready" in out.stderr, out.stderr
    assert f"virtual cluster {name} is Ready" in out.stdout, out.stdout
    ctx = f"vcluster-py_{name}_{PROJECT}"
    assert f"switched to context {ctx}" in out.stdout
    vci = get_json(hk, "vci", name, "-n", PNS)
    assert yaml.safe_load(vci["spec"]["parameters"]) == {"greeting": "hello-there"}
    objects = next(
        c for c in vci["status"]["conditions"] if c["type"] == "VirtualClusterAppsAndObjectsSynced"
    )
    assert objects["status"] == "True", vci["status"]

    # inside the virtual cluster, through the instance's kubeconfig (the context `create` added)
    vk = kubectl_for(binaries, user_kubeconfig)
    assert vk("config", "current-context").stdout.strip() == ctx
    cm = json.loads(vk("get", "configmap", "from-template", "-n", "team-a", "-o", "json").stdout)
    assert cm["data"] == {"greeting": "hello-there"}
    cm = json.loads(vk("get", "configmap", "in-default", "-n", "default", "-o", "json").stdout)
    assert cm["data"] == {"vcluster": name}
    # ... and not in the host namespace (a ConfigMap nobody uses is not synced)
    assert not exists(hk, "configmap", "-n", host_ns, "-l", "vcluster.loft.sh/object-name=from-template")

    cli("delete", "vcluster", name, "--project", PROJECT, "--wait", kubeconfig=user_kubeconfig)
    config = yaml.safe_load(user_kubeconfig.read_text())
    assert not any(c["name"] == ctx for c in config["contexts"])
    _ns_gone(hk, host_ns)


# --- management API: watch, update (PUT), deletecollection


class _Watch:
    """A streamed watch on the management API, read line by line in a thread."""

    def __init__(self, cp: ControlPlane, path: str, tok: str) -> None:
        req = urllib.request.Request(
            f"https://127.0.0.1:{cp.api_port}{API_PREFIX}{path}",
            headers={"Authorization": f"Bearer {tok}"},
        )
        self.resp = urllib.request.urlopen(req, timeout=120, context=INSECURE)
        assert self.resp.status == 200
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.resp:
                if line.strip():
                    with self.lock:
                        self.events.append(json.loads(line))
        except Exception:  # the stream ends when close() shuts the response under us
            return

    def seen(self, type_: str, name: str, pred: Any = None) -> dict[str, Any] | None:
        with self.lock:
            for ev in self.events:
                obj = ev.get("object") or {}
                named = obj.get("metadata", {}).get("name") == name
                if ev.get("type") == type_ and named and (pred is None or pred(obj)):
                    return ev
        return None

    def close(self) -> None:
        self.resp.close()


def test_management_api_watch_update_deletecollection(hk: Kubectl, controlplane: ControlPlane) -> None:
    tok = admin_token(hk)
    base = f"/namespaces/{PNS}/spaceinstances"
    code, listed = api(controlplane, "GET", base, tok)
    assert code == 200, listed
    rv = listed["metadata"]["resourceVersion"]
    watch = _Watch(controlplane, f"{base}?watch=true&resourceVersion={rv}&timeoutSeconds=120", tok)
    names = [unique_name("batch"), unique_name("batch")]
    try:
        for name in names:
            body = {
                "apiVersion": "management.loft.sh/v1",
                "kind": "SpaceInstance",
                "metadata": {"name": name, "namespace": PNS, "labels": {"batch": "api-test"}},
                "spec": {"template": {"metadata": {"labels": {"made-by": "api"}}}},
            }
            code, created = api(
                controlplane, "POST", base, tok, yaml.safe_dump(body).encode(), "application/yaml"
            )
            assert code == 201, created
        # a streamed event for each change
        eventually(lambda: watch.seen("ADDED", names[0]), timeout=30, what="ADDED event on the watch")
        eventually(
            lambda: watch.seen(
                "MODIFIED", names[0], lambda o: (o.get("status") or {}).get("phase") == "Ready"
            ),
            timeout=120,
            what="MODIFIED event with phase Ready",
        )

        # update (PUT) of the whole object
        code, current = api(controlplane, "GET", f"{base}/{names[0]}", tok)
        assert code == 200, current
        current["spec"]["displayName"] = "renamed by PUT"
        code, updated = api(controlplane, "PUT", f"{base}/{names[0]}", tok, json.dumps(current).encode())
        assert code == 200, updated
        assert updated["spec"]["displayName"] == "renamed by PUT"
        assert updated["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
        eventually(
            lambda: watch.seen(
                "MODIFIED", names[0], lambda o: o["spec"].get("displayName") == "renamed by PUT"
            ),
            timeout=30,
            what="MODIFIED event for the PUT",
        )
        # a stale resourceVersion conflicts
        code, conflict = api(controlplane, "PUT", f"{base}/{names[0]}", tok, json.dumps(current).encode())
        assert code == 409, conflict

        # deletecollection by label selector
        wait_phase(hk, controlplane, names[1], "Ready", timeout=120, kind="spaceinstances")
        code, deleted = api(controlplane, "DELETE", f"{base}?labelSelector=batch%3Dapi-test", tok)
        assert code == 200, deleted
        for name in names:
            eventually(
                lambda n=name: not exists(hk, "spaceinstances.management.loft.sh", n, "-n", PNS),  # type: ignore[misc]
                timeout=120,
                what=f"{name} deleted by deletecollection",
            )
            _ns_gone(hk, f"loft-{PROJECT}-s-{name}")
            assert watch.seen("DELETED", name), name
        # RBAC still applies to the collection verbs
        code, _ = api(controlplane, "DELETE", f"{base}?labelSelector=batch%3Dnone", "not-a-token")
        assert code == 401
    finally:
        watch.close()
        for name in names:
            hk(
                "delete",
                "spaceinstances.management.loft.sh",
                name,
                "-n",
                PNS,
                "--ignore-not-found",
                check=False,
            )


# --- CLI import


def test_cli_import_existing_virtual_cluster(
    hk: Kubectl,
    controlplane: ControlPlane,
    host_cluster: HostCluster,
    user_kubeconfig: Path,
    tmp_path: Path,
    binaries: Binaries,
) -> None:
    existing = legacy_cluster(host_cluster, tmp_path / "legacy")
    ns = existing.namespace
    existing.start()
    try:
        out = cli(
            "import",
            "vcluster",
            "legacy",
            "--project",
            PROJECT,
            "--namespace",
            ns,
            "--importname",
            "cli-adopted",
            "--wait",
            kubeconfig=user_kubeconfig,
            timeout=200,
        )
        assert f"imported into project {PROJECT} as cli-adopted" in out.stdout, out.stdout
        assert "[cli-adopted] Ready" in out.stderr, out.stderr
        vci = get_json(hk, "vci", "cli-adopted", "-n", PNS)
        assert vci["metadata"]["annotations"]["loft.sh/imported"] == "true"
        assert vci["spec"]["clusterRef"] == {"cluster": "local", "namespace": ns, "virtualCluster": "legacy"}
        assert "cli-adopted" in cli("list", "vclusters", kubeconfig=user_kubeconfig).stdout
        # Like `create`, an import adds a kube-context for the adopted cluster and switches to it.
        ctx = f"vcluster-py_cli-adopted_{PROJECT}"
        assert f"switched to context {ctx}" in out.stdout, out.stdout
        vk = kubectl_for(binaries, user_kubeconfig)
        assert vk("config", "current-context").stdout.strip() == ctx
        assert "namespace/default" in vk("get", "namespaces", "-o", "name").stdout
        pids = existing.pids()
        cli("delete", "vcluster", "cli-adopted", "--project", PROJECT, "--wait", kubeconfig=user_kubeconfig)
        config = yaml.safe_load(user_kubeconfig.read_text())
        assert not any(c["name"] == ctx for c in config["contexts"])
        # adopted, not owned: the same processes keep running and the namespace stays
        assert existing.pids() == pids and all(pids)
        assert hk("get", "namespace", ns, check=False).returncode == 0
        assert not exists(hk, "vci", "cli-adopted", "-n", PNS)
    finally:
        existing.stop()
        hk("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
