"""The control plane with the `helm` driver, end to end on the local host cluster.

An instance annotated `vcluster-py.loft.sh/driver: helm` is installed as a release of charts/vcluster
with the rendered values. The StatefulSet pod is scheduled onto a kwok node, where kwok simulates the
containers and makes the pod Ready (k3s and the syncer never run, so there is no virtual API): for the
helm driver, Ready means the release's pod is Ready. Deleting the instance uninstalls the release
and removes the namespace the controller created.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from controlplane.local.binaries import Binaries
from controlplane.local.host import HostCluster
from tests.e2e.controlplane_support import (
    PNS,
    PROJECT,
    ControlPlane,
    controlplane_fixture,
    ensure_project,
    exists,
    get_json,
    wait_phase,
)
from tests.support import Kubectl, eventually, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

EXTRA_ARG = "--disable-sync-resources=ingresses"


@pytest.fixture(scope="module")
def controlplane(
    host_cluster: HostCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    yield from controlplane_fixture(host_cluster, tmp_path_factory.mktemp("controlplane-helm"))


@pytest.fixture(scope="module")
def hk(host_kubectl: Kubectl, controlplane: ControlPlane) -> Kubectl:
    ensure_project(host_kubectl)
    return host_kubectl


def _helm(binaries: Binaries, cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **cp.helm_env}
    proc = subprocess.run(
        [str(binaries.helm), f"--kubeconfig={cp.host.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, f"helm {' '.join(args)} failed: {proc.stderr}{proc.stdout}"
    return proc


def _kwok_nodes(hk: Kubectl) -> set[str]:
    return {n["metadata"]["name"] for n in get_json(hk, "nodes", "-l", "type=kwok")["items"]}


def _pod_ready(hk: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    if not exists(hk, "pod", name, "-n", ns):
        return None
    pod: dict[str, Any] = get_json(hk, "pod", name, "-n", ns)
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return pod if ready else None


def test_helm_driver_installs_rendered_values_sleeps_wakes_and_uninstalls_on_delete(
    hk: Kubectl, controlplane: ControlPlane, binaries: Binaries
) -> None:
    name = unique_name("hv")
    host_ns = f"loft-{PROJECT}-v-{name}"
    values = {
        "syncer": {"extraArgs": [EXTRA_ARG]},
        "storage": {"persistence": False},  # no volume provisioner on the local host cluster
    }
    vci = {
        "apiVersion": "management.loft.sh/v1",
        "kind": "VirtualClusterInstance",
        "metadata": {
            "name": name,
            "namespace": PNS,
            "annotations": {"vcluster-py.loft.sh/driver": "helm"},
        },
        "spec": {
            "template": {
                "helmRelease": {"values": yaml.safe_dump(values)},
                # objects inside the virtual cluster: there is no virtual API on kwok, so they wait
                # without holding the phase back (the helm driver's Ready is the pod's)
                "objects": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-template\n",
            }
        },
    }
    hk("create", "-f", "-", stdin=json.dumps(vci))
    try:
        st = wait_phase(hk, controlplane, name, "Ready", timeout=300)
        types = {c["type"]: c["status"] for c in st["conditions"]}
        for cond in ("TemplateResolved", "SpaceReady", "VirtualClusterDeployed", "VirtualClusterReady"):
            assert types.get(cond) == "True", st
        objects = next(c for c in st["conditions"] if c["type"] == "VirtualClusterAppsAndObjectsSynced")
        assert objects["status"] == "False" and objects["reason"] == "WaitingForVirtualAPI", st
        assert f"vc-{name}" in objects["message"]

        # the release carries the rendered values: chart defaults < detected service CIDR < template
        releases = json.loads(_helm(binaries, controlplane, "list", "-n", host_ns, "-o", "json").stdout)
        assert [r["name"] for r in releases] == [name], releases
        got = json.loads(
            _helm(binaries, controlplane, "get", "values", name, "-n", host_ns, "-o", "json").stdout
        )
        assert got["syncer"]["extraArgs"] == [EXTRA_ARG]
        assert got["storage"]["persistence"] is False
        assert got["serviceCIDR"] == controlplane.host.service_cidr

        # the StatefulSet's syncer gets the extra args verbatim (last, after the chart's own)
        sts = get_json(hk, "statefulset", name, "-n", host_ns)
        containers = {c["name"]: c for c in sts["spec"]["template"]["spec"]["containers"]}
        assert containers["syncer"]["args"][-1] == EXTRA_ARG
        assert EXTRA_ARG in containers["syncer"]["args"]

        # its pod runs on a kwok node, Ready (kwok simulates it)
        pod = eventually(lambda: _pod_ready(hk, host_ns, f"{name}-0"), timeout=120, what="vcluster pod Ready")
        assert isinstance(pod, dict)
        assert pod["spec"]["nodeName"] in _kwok_nodes(hk)

        # the namespace points back at the instance
        labels = get_json(hk, "namespace", host_ns)["metadata"]["labels"]
        assert labels["loft.sh/vcluster-instance-name"] == name
        assert labels["loft.sh/vcluster-instance-namespace"] == PNS

        # sleep: scaled to zero, the release (and its data) kept; wake: back to one Ready pod
        hk("annotate", "vci", name, "-n", PNS, "sleepmode.loft.sh/force=true")
        wait_phase(hk, controlplane, name, "Sleeping", timeout=180)
        eventually(
            lambda: (
                get_json(hk, "statefulset", name, "-n", host_ns)["spec"]["replicas"] == 0
                and hk("get", "pod", f"{name}-0", "-n", host_ns, check=False).returncode != 0
            ),
            timeout=120,
            what="StatefulSet scaled to zero and its pod gone",
        )
        releases = json.loads(_helm(binaries, controlplane, "list", "-n", host_ns, "-o", "json").stdout)
        assert [r["name"] for r in releases] == [name], "the release stays installed while asleep"
        hk("annotate", "vci", name, "-n", PNS, "sleepmode.loft.sh/force-")
        wait_phase(hk, controlplane, name, "Ready", timeout=300)
        assert get_json(hk, "statefulset", name, "-n", host_ns)["spec"]["replicas"] == 1
        eventually(
            lambda: _pod_ready(hk, host_ns, f"{name}-0"), timeout=120, what="vcluster pod Ready after wake"
        )
    finally:
        hk("delete", "vci", name, "-n", PNS, "--ignore-not-found", "--wait=true", timeout=300)

    # deleting the instance uninstalled the release and removed the namespace
    assert not exists(hk, "vci", name, "-n", PNS)
    eventually(
        lambda: hk("get", "namespace", host_ns, check=False).returncode != 0,
        timeout=180,
        what="host namespace deleted",
    )
    releases = json.loads(_helm(binaries, controlplane, "list", "-A", "-o", "json").stdout)
    assert not [r for r in releases if r["name"] == name], releases
    assert not exists(hk, "statefulset", "-A", "-l", f"release={name}")
    assert not exists(hk, "clusterrole", f"vc-{name}-{host_ns}")
