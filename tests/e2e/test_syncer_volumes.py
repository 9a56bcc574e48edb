"""PersistentVolumeClaims, fake PersistentVolumes and StorageClasses end to end, through kubectl.

The host cluster has the PV binder (the virtual one does not): a test pre-creates a host PV whose
claimRef names the host copy of the claim, the host binds them, and everything the tenant then sees
(Bound, volumeName, a PV of that name) comes from the syncer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from controlplane.local.host import HostCluster
from controlplane.local.tenant import LocalVirtualCluster
from syncer.host_rbac import STORAGE_CLASS_CLUSTER_RULES
from syncer.translate.names import (
    ANN_OBJECT_KIND,
    ANN_OBJECT_NAME,
    ANN_OBJECT_NAMESPACE,
    MARKER_LABEL,
    NAMESPACE_LABEL,
    host_name,
)
from syncer.translate.storageclasses import SYNCED_LABEL
from syncer.translate.volumes import FAKE_CSI_DRIVER, FAKE_PV_LABEL
from tests.e2e.test_syncer_lifecycle import metric_sum
from tests.e2e.test_syncer_pods import get_json, wait_running
from tests.support import Kubectl, eventually, kubectl_for, unique_name

pytestmark = pytest.mark.e2e

TIMEOUT = 60


def apply(kubectl: Kubectl, *objects: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))


def storage_class(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
        **fields,
    }


def claim(name: str, ns: str, storage_class_name: str, size: str = "1Gi", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, **meta},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class_name,
            "resources": {"requests": {"storage": size}},
        },
    }


def host_volume(name: str, storage_class_name: str, claim_ns: str, claim_name: str) -> dict[str, Any]:
    """A host PV pre-bound to one host claim (the host binder completes the binding)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "2Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class_name,
            "hostPath": {"path": f"/tmp/{name}"},
            "claimRef": {"namespace": claim_ns, "name": claim_name},
        },
    }


def host_claim(
    host_kubectl: Kubectl, vcluster: LocalVirtualCluster, name: str, ns: str
) -> dict[str, Any] | None:
    return get_json(host_kubectl, "pvc", host_name(name, ns, vcluster.name), "-n", vcluster.namespace)


def warnings_for(vc_kubectl: Kubectl, kind: str, name: str, ns: str) -> list[str]:
    out = vc_kubectl(
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        f"involvedObject.kind={kind},involvedObject.name={name},type=Warning",
        "-o",
        "json",
    )
    return [event["message"] for event in json.loads(out.stdout)["items"]]


@pytest.fixture
def host_storage_class(host_kubectl: Kubectl) -> Iterator[str]:
    """An expandable host class without a provisioner: claims bind to pre-created PVs only."""
    name = unique_name("sc")
    apply(host_kubectl, storage_class(name, allowVolumeExpansion=True))
    yield name
    host_kubectl("delete", "storageclass", name, "--ignore-not-found", "--wait=false", check=False)


def test_claim_binds_resizes_and_goes_with_its_fake_volume(
    vcluster: LocalVirtualCluster,
    vc_kubectl: Kubectl,
    host_kubectl: Kubectl,
    vns: str,
    host_storage_class: str,
) -> None:
    hns, sc = vcluster.namespace, host_storage_class
    # Without storageclass sync the tenant brings its own class of that name (the virtual API server
    # checks allowVolumeExpansion of the virtual class before it accepts a resize).
    apply(vc_kubectl, storage_class(sc, allowVolumeExpansion=True))
    apply(vc_kubectl, claim("data", vns, sc, labels={"app": "db"}, annotations={"team": "blue"}))

    host = eventually(
        lambda: host_claim(host_kubectl, vcluster, "data", vns), timeout=TIMEOUT, what="host claim"
    )
    assert isinstance(host, dict)
    meta = host["metadata"]
    assert meta["name"] == f"data-x-{vns}-x-{vcluster.name}"
    assert meta["labels"]["app"] == "db"
    assert meta["labels"][MARKER_LABEL] == vcluster.name
    assert meta["labels"][NAMESPACE_LABEL] == vns
    assert meta["annotations"]["team"] == "blue"
    assert meta["annotations"][ANN_OBJECT_NAME] == "data"
    assert meta["annotations"][ANN_OBJECT_NAMESPACE] == vns
    assert meta["annotations"][ANN_OBJECT_KIND] == "PersistentVolumeClaim"
    assert host["spec"]["storageClassName"] == sc
    assert host["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert host["spec"]["accessModes"] == ["ReadWriteOnce"]

    volume = unique_name("pv")
    apply(host_kubectl, host_volume(volume, sc, hns, meta["name"]))
    try:
        _bound_claim_and_fake_volume(vcluster, vc_kubectl, host_kubectl, vns, volume)
    finally:
        host_kubectl("delete", "pv", volume, "--ignore-not-found", "--wait=false", check=False)
        vc_kubectl("delete", "storageclass", sc, "--ignore-not-found", check=False)


def _bound_claim_and_fake_volume(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str, volume: str
) -> None:
    def bound() -> dict[str, Any] | None:
        pvc = get_json(vc_kubectl, "pvc", "data", "-n", vns)
        return pvc if pvc and pvc.get("status", {}).get("phase") == "Bound" else None

    vpvc = eventually(bound, timeout=TIMEOUT, what="virtual claim Bound")
    assert isinstance(vpvc, dict)
    assert vpvc["spec"]["volumeName"] == volume
    assert vpvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert vpvc["status"]["capacity"] == {"storage": "2Gi"}
    assert "kubernetes.io/pvc-protection" in vpvc["metadata"]["finalizers"]

    def fake_volume_bound() -> dict[str, Any] | None:
        pv = get_json(vc_kubectl, "pv", volume)
        return pv if pv and pv.get("status", {}).get("phase") == "Bound" else None

    pv = eventually(fake_volume_bound, timeout=TIMEOUT, what="fake PV Bound in the virtual cluster")
    assert isinstance(pv, dict)
    assert pv["metadata"]["labels"][FAKE_PV_LABEL] == "true"
    assert pv["spec"]["csi"]["driver"] == FAKE_CSI_DRIVER
    assert pv["spec"]["capacity"] == {"storage": "2Gi"}
    ref = pv["spec"]["claimRef"]
    assert (ref["namespace"], ref["name"], ref["uid"]) == (vns, "data", vpvc["metadata"]["uid"])

    # Converged: drift passes re-reconcile the claim and the fake PV without writing anything.
    wait_without_writes(vcluster, {"PersistentVolumeClaim", "PersistentVolume"})

    # A storage-request increase reaches the host claim.
    vc_kubectl(
        "patch",
        "pvc",
        "data",
        "-n",
        vns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"resources": {"requests": {"storage": "3Gi"}}}}),
    )
    eventually(
        lambda: (
            (host_claim(host_kubectl, vcluster, "data", vns) or {})
            .get("spec", {})
            .get("resources", {})
            .get("requests", {})
            .get("storage")
            == "3Gi"
        ),
        timeout=TIMEOUT,
        what="storage increase on the host claim",
    )

    # A pod using the claim mounts the host copy under its host name.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "user", "namespace": vns},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.invalid/app:1",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }
    apply(vc_kubectl, pod)
    wait_running(vc_kubectl, "user", vns)
    hpod = get_json(host_kubectl, "pod", host_name("user", vns, vcluster.name), "-n", vcluster.namespace)
    assert hpod is not None
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in hpod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [host_name("data", vns, vcluster.name)]

    # Deleting a claim in use: Terminating on both sides until the pod goes, like in any cluster.
    vc_kubectl("delete", "pvc", "data", "-n", vns, "--wait=false")
    eventually(
        lambda: (
            (host_claim(host_kubectl, vcluster, "data", vns) or {})
            .get("metadata", {})
            .get("deletionTimestamp")
        ),
        timeout=TIMEOUT,
        what="host claim Terminating",
    )
    still = get_json(vc_kubectl, "pvc", "data", "-n", vns)
    assert still is not None and still["metadata"].get("deletionTimestamp"), "virtual claim in use must stay"
    assert get_json(vc_kubectl, "pv", volume) is not None, "the fake PV stays while its claim exists"

    vc_kubectl("delete", "pod", "user", "-n", vns, "--wait=false")
    eventually(
        lambda: host_claim(host_kubectl, vcluster, "data", vns) is None,
        timeout=TIMEOUT,
        what="host claim deleted",
    )
    eventually(
        lambda: get_json(vc_kubectl, "pvc", "data", "-n", vns) is None, timeout=TIMEOUT, what="claim gone"
    )
    eventually(lambda: get_json(vc_kubectl, "pv", volume) is None, timeout=TIMEOUT, what="fake PV gone")


def test_long_claim_name(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    name = "claim-" + "a" * 60
    apply(vc_kubectl, claim(name, vns, "none"))
    expected = host_name(name, vns, vcluster.name)
    assert len(expected) == 63
    host = eventually(
        lambda: get_json(host_kubectl, "pvc", expected, "-n", vcluster.namespace),
        timeout=TIMEOUT,
        what="host copy of the long-named claim",
    )
    assert isinstance(host, dict)
    assert host["metadata"]["annotations"][ANN_OBJECT_NAME] == name
    vc_kubectl("delete", "pvc", name, "-n", vns, "--wait=false")
    eventually(
        lambda: get_json(host_kubectl, "pvc", expected, "-n", vcluster.namespace) is None,
        timeout=TIMEOUT,
        what="long-named host claim deleted",
    )


def test_ambiguous_claim_names_never_share_a_host_claim(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl
) -> None:
    suffix = unique_name("s")
    team, prod_team = f"team-{suffix}", f"prod-x-team-{suffix}"
    for ns in (team, prod_team):
        vc_kubectl("create", "namespace", ns)
    try:
        apply(vc_kubectl, claim("data-x-prod", team, "none"))
        first = eventually(
            lambda: host_claim(host_kubectl, vcluster, "data-x-prod", team),
            timeout=TIMEOUT,
            what="first host copy",
        )
        assert isinstance(first, dict)
        apply(vc_kubectl, claim("data", prod_team, "none", size="5Gi"))
        assert host_name("data", prod_team, vcluster.name) == first["metadata"]["name"]
        eventually(
            lambda: any(
                "not synced" in m
                for m in warnings_for(vc_kubectl, "PersistentVolumeClaim", "data", prod_team)
            ),
            timeout=TIMEOUT,
            what="SyncError event on the second claim",
        )
        after = host_claim(host_kubectl, vcluster, "data-x-prod", team)
        assert after is not None
        assert after["metadata"]["uid"] == first["metadata"]["uid"]
        assert after["metadata"]["annotations"][ANN_OBJECT_NAMESPACE] == team
        assert after["spec"]["resources"]["requests"]["storage"] == "1Gi"
        # Deleting the second claim must not take the first one's host copy with it.
        vc_kubectl("delete", "pvc", "data", "-n", prod_team)
        assert eventually(
            lambda: get_json(vc_kubectl, "pvc", "data", "-n", prod_team) is None, timeout=TIMEOUT
        )
        kept = host_claim(host_kubectl, vcluster, "data-x-prod", team)
        assert kept is not None and kept["metadata"]["uid"] == first["metadata"]["uid"]
    finally:
        for ns in (team, prod_team):
            vc_kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


# --- StorageClasses: a virtual cluster of its own, started with --sync=+storageclasses


@pytest.fixture(scope="module")
def sc_vcluster(
    tmp_path_factory: pytest.TempPathFactory, host_cluster: HostCluster, host_kubectl: Kubectl
) -> Iterator[LocalVirtualCluster]:
    """A syncer with storageclass sync, granted the ClusterRole that needs (never the default Role)."""
    name = unique_name("scs")
    cluster = LocalVirtualCluster(
        host_cluster,
        name=name,
        namespace=f"{name}-host",
        state_dir=tmp_path_factory.mktemp(name),
        syncer_args=("--resync-period=2", "--sync=+storageclasses"),
    )
    rbac_name = f"vc-{name}-storageclasses"
    cluster.start(syncer=False)
    try:
        apply(
            host_kubectl,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": rbac_name},
                "rules": STORAGE_CLASS_CLUSTER_RULES,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": rbac_name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": rbac_name,
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": cluster.service_account,
                        "namespace": cluster.namespace,
                    }
                ],
            },
        )
        cluster.start_syncer()
        yield cluster
    finally:
        cluster.stop()
        host_kubectl("delete", "clusterrolebinding,clusterrole", rbac_name, "--ignore-not-found", check=False)
        host_kubectl(
            "delete", "namespace", cluster.namespace, "--wait=false", "--ignore-not-found", check=False
        )


@pytest.fixture(scope="module")
def sc_kubectl(sc_vcluster: LocalVirtualCluster) -> Kubectl:
    return kubectl_for(sc_vcluster.host.binaries, sc_vcluster.plane.admin_kubeconfig_path)


def writes_of(vcluster: LocalVirtualCluster, kinds: set[str]) -> float:
    """Writes of these kinds so far, their subresources (`PersistentVolumeClaim/status`) included."""
    total = 0.0
    for line in vcluster.metrics().splitlines():
        kind = re.search(r'kind="([^"/]*)', line)
        if line.startswith("vcluster_writes_total{") and kind and kind.group(1) in kinds:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_without_writes(vcluster: LocalVirtualCluster, kinds: set[str]) -> None:
    """Two whole drift passes during which the syncer wrote no object of these kinds."""

    def quiet_passes() -> bool:
        before = writes_of(vcluster, kinds)
        wait_drift_passes(vcluster)
        return writes_of(vcluster, kinds) == before

    eventually(
        quiet_passes, timeout=TIMEOUT * 2, interval=0.5, what=f"drift passes without writes of {kinds}"
    )


def wait_drift_passes(vcluster: LocalVirtualCluster, count: int = 2) -> None:
    """Wait until the syncer has looked at every key `count` more times (instead of sleeping)."""
    start = metric_sum(vcluster.metrics(), "vcluster_syncer_resyncs_total")
    eventually(
        lambda: metric_sum(vcluster.metrics(), "vcluster_syncer_resyncs_total") >= start + count,
        timeout=TIMEOUT,
        what=f"{count} drift passes",
    )


def test_storage_classes_mirrored_read_only(
    sc_vcluster: LocalVirtualCluster, sc_kubectl: Kubectl, host_kubectl: Kubectl
) -> None:
    name = unique_name("fast")
    host_class = storage_class(
        name,
        parameters={"type": "ssd"},
        allowVolumeExpansion=True,
        reclaimPolicy="Retain",
    )
    host_class["metadata"]["labels"] = {"tier": "ssd"}
    host_class["metadata"]["annotations"] = {"example.com/owner": "storage-team"}
    apply(host_kubectl, host_class)
    try:
        copy = eventually(
            lambda: get_json(sc_kubectl, "storageclass", name), timeout=TIMEOUT, what="virtual copy"
        )
        assert isinstance(copy, dict)
        assert copy["provisioner"] == "kubernetes.io/no-provisioner"
        assert copy["parameters"] == {"type": "ssd"}
        assert copy["reclaimPolicy"] == "Retain"
        assert copy["allowVolumeExpansion"] is True
        assert copy["metadata"]["labels"] == {"tier": "ssd", SYNCED_LABEL: "true"}
        assert copy["metadata"]["annotations"]["example.com/owner"] == "storage-team"

        # Tenant edits are reverted.
        sc_kubectl("label", "storageclass", name, "mine=yes")
        sc_kubectl("annotate", "storageclass", name, "example.com/owner=tenant", "--overwrite")
        sc_kubectl("patch", "storageclass", name, "--type=merge", "-p", '{"allowVolumeExpansion": false}')

        def reverted() -> bool:
            current = get_json(sc_kubectl, "storageclass", name) or {}
            meta = current.get("metadata", {})
            return (
                "mine" not in meta.get("labels", {})
                and meta.get("annotations", {}).get("example.com/owner") == "storage-team"
                and current.get("allowVolumeExpansion") is True
            )

        eventually(reverted, timeout=TIMEOUT, what="tenant edits reverted")

        # Deleted by the tenant: it comes back.
        sc_kubectl("delete", "storageclass", name)
        eventually(lambda: get_json(sc_kubectl, "storageclass", name), timeout=TIMEOUT, what="copy recreated")

        # The host class replaced with other (immutable) parameters: the copy follows.
        host_kubectl("delete", "storageclass", name)
        host_class["parameters"] = {"type": "nvme"}
        apply(host_kubectl, host_class)
        eventually(
            lambda: (get_json(sc_kubectl, "storageclass", name) or {}).get("parameters") == {"type": "nvme"},
            timeout=TIMEOUT,
            what="copy recreated with the new parameters",
        )
    finally:
        host_kubectl("delete", "storageclass", name, "--ignore-not-found", check=False)
    eventually(
        lambda: get_json(sc_kubectl, "storageclass", name) is None,
        timeout=TIMEOUT,
        what="copy deleted with its host class",
    )


def test_tenant_storage_classes_are_never_touched(
    sc_vcluster: LocalVirtualCluster, sc_kubectl: Kubectl, host_kubectl: Kubectl
) -> None:
    own, shadowing = unique_name("own"), unique_name("shared")
    apply(sc_kubectl, storage_class(own), storage_class(shadowing, provisioner="tenant.example.com"))
    apply(host_kubectl, storage_class(shadowing, provisioner="host.example.com"))
    try:
        eventually(
            lambda: any(
                "not synced" in m for m in warnings_for(sc_kubectl, "StorageClass", shadowing, "default")
            ),
            timeout=TIMEOUT,
            what="SyncError event on the tenant's class",
        )
        wait_drift_passes(sc_vcluster)
        assert (get_json(sc_kubectl, "storageclass", shadowing) or {}).get(
            "provisioner"
        ) == "tenant.example.com"
        assert get_json(sc_kubectl, "storageclass", own) is not None
        host_kubectl("delete", "storageclass", shadowing)
        wait_drift_passes(sc_vcluster)
        assert get_json(sc_kubectl, "storageclass", shadowing) is not None, "a tenant class is never deleted"
    finally:
        host_kubectl("delete", "storageclass", shadowing, "--ignore-not-found", check=False)
        sc_kubectl("delete", "storageclass", own, shadowing, "--ignore-not-found", check=False)
