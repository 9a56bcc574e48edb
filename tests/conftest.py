"""Shared fixtures: real local clusters, started once per test session.

The clusters are real processes (etcd/kine, kube-apiserver, kube-controller-manager, kube-scheduler,
kwok) built by hack/build-k8s.sh. Unit tests never touch these fixtures, so they run without the
binaries; an e2e test without binaries fails with the command that builds them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from controlplane.local.binaries import Binaries
from controlplane.local.host import HostCluster
from controlplane.local.tenant import LocalVirtualCluster
from controlplane.local.virtual import VirtualControlPlane
from tests.support import Kubectl, kubectl_for, unique_name


def _assert_all_dead(pids: list[int]) -> None:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    assert not alive, f"processes left running after stop: {alive}"


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    return Binaries.locate()


@pytest.fixture(scope="session")
def host_cluster(tmp_path_factory: pytest.TempPathFactory, binaries: Binaries) -> Iterator[HostCluster]:
    cluster = HostCluster(tmp_path_factory.mktemp("host"), nodes=2, binaries=binaries)
    cluster.start()
    print(f"\nhost cluster start-up: {cluster.startup_seconds}")
    try:
        yield cluster
    finally:
        pids = cluster.pids()
        cluster.stop()
        _assert_all_dead(pids)


@pytest.fixture(scope="session")
def virtual_cluster(
    tmp_path_factory: pytest.TempPathFactory, binaries: Binaries, host_cluster: HostCluster
) -> Iterator[VirtualControlPlane]:
    plane = VirtualControlPlane(
        tmp_path_factory.mktemp("vcluster") / "data",
        service_cidr=host_cluster.service_cidr,
        binaries=binaries,
    )
    plane.start()
    print(f"\nvirtual control plane start-up: {plane.startup_seconds}")
    try:
        yield plane
    finally:
        pids = plane.pids()
        plane.stop()
        _assert_all_dead(pids)


@pytest.fixture
def namespace(host_cluster: HostCluster) -> Iterator[str]:
    """A fresh host namespace per test, deleted afterwards (without waiting for finalization)."""
    name = unique_name("t")
    host_cluster.kubectl("create", "namespace", name)
    yield name
    host_cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="session")
def host_kubectl(binaries: Binaries, host_cluster: HostCluster) -> Kubectl:
    return kubectl_for(binaries, host_cluster.kubeconfig)


@pytest.fixture(scope="session")
def virtual_kubectl(binaries: Binaries, virtual_cluster: VirtualControlPlane) -> Kubectl:
    return kubectl_for(binaries, virtual_cluster.admin_kubeconfig_path)


@pytest.fixture(scope="session")
def vcluster(
    tmp_path_factory: pytest.TempPathFactory, host_cluster: HostCluster
) -> Iterator[LocalVirtualCluster]:
    """A virtual cluster with a running syncer (host access: only the syncer's Role), drift pass every 2 s."""
    cluster = LocalVirtualCluster(
        host_cluster,
        name="vc1",
        namespace="vc1-host",
        state_dir=tmp_path_factory.mktemp("vc1"),
        syncer_args=("--resync-period=2", "--lease-duration=4", "--renew-deadline=3", "--retry-period=0.5"),
    )
    cluster.start()
    try:
        yield cluster
    finally:
        pids = cluster.pids()
        cluster.stop()
        _assert_all_dead(pids)


@pytest.fixture(scope="session")
def vc_kubectl(binaries: Binaries, vcluster: LocalVirtualCluster) -> Kubectl:
    return kubectl_for(binaries, vcluster.plane.admin_kubeconfig_path)


@pytest.fixture
def vns(vc_kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace in the virtual cluster."""
    name = unique_name("v")
    vc_kubectl("create", "namespace", name)
    yield name
    vc_kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
