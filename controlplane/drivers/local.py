"""The `local` driver: each virtual cluster as local processes (virtual control plane + syncer).

It uses controlplane.local.tenant.LocalVirtualCluster against a host reached through a kubeconfig.
The processes are children of the controller: they die with it, and a restarted controller starts
them again from the kept data directory (`installed` is False, so the reconcile redeploys).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controlplane.local.binaries import Binaries
from controlplane.local.tenant import LocalVirtualCluster
from syncer.kube.client import KubeClient

from ..resources import kubeconfig_secret
from . import Deployment, delete_synced_pods

log = logging.getLogger(__name__)


@dataclass
class _CA:
    server_ca: Path


class KubeconfigHost:
    """A host cluster known only by an admin kubeconfig (what LocalVirtualCluster needs of it)."""

    def __init__(self, kubeconfig: Path, binaries: Binaries, service_cidr: str, work_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.binaries = binaries
        self.service_cidr = service_cidr
        config: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
        contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
        clusters = {c["name"]: c["cluster"] for c in config.get("clusters") or []}
        current = contexts.get(config.get("current-context") or "") or next(iter(contexts.values()))
        cluster = clusters[current["cluster"]]
        self.server = str(cluster["server"])
        ca_path = work_dir / "host-ca.crt"
        work_dir.mkdir(parents=True, exist_ok=True)
        if cluster.get("certificate-authority-data"):
            ca_path.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        elif cluster.get("certificate-authority"):
            ca_path.write_bytes((kubeconfig.parent / cluster["certificate-authority"]).read_bytes())
        else:
            ca_path.write_bytes(b"")
        self.pki = _CA(ca_path)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self.binaries.kubectl(self.kubeconfig, *args, stdin=stdin, check=check, timeout=timeout)


class LocalDriver:
    name = "local"
    virtual_api = True  # the virtual API server is a local process: always reachable

    def __init__(
        self,
        client: KubeClient,
        host_kubeconfig: Path,
        state_dir: Path,
        *,
        binaries: Binaries | None = None,
        extra_syncer_args: tuple[str, ...] = (),
    ) -> None:
        self.client = client
        self.host_kubeconfig = host_kubeconfig
        self.state_dir = state_dir.resolve()
        self.binaries = binaries or Binaries.locate()
        self.extra_syncer_args = extra_syncer_args
        self.clusters: dict[tuple[str, str], LocalVirtualCluster] = {}
        self._lock = asyncio.Lock()

    def _dir(self, name: str, namespace: str) -> Path:
        return self.state_dir / namespace / name

    async def deploy(self, deployment: Deployment) -> None:
        key = (deployment.namespace, deployment.name)
        async with self._lock:
            old = self.clusters.pop(key, None)
        if old is not None:
            await asyncio.to_thread(old.stop)
        cidr = str(deployment.values.get("serviceCIDR") or "10.96.0.0/12")
        state = self._dir(deployment.name, deployment.namespace)
        host = KubeconfigHost(self.host_kubeconfig, self.binaries, cidr, state)
        cluster = LocalVirtualCluster(
            host,
            name=deployment.name,
            namespace=deployment.namespace,
            state_dir=state,
            syncer_args=(
                *self.extra_syncer_args,
                *deployment.syncer_args,
                f"--out-kube-config-secret={kubeconfig_secret(deployment.name)}",
            ),
        )
        async with self._lock:
            self.clusters[key] = cluster
        log.info(
            "starting local virtual cluster", extra={"vcluster": deployment.name, "ns": deployment.namespace}
        )
        await asyncio.to_thread(cluster.start)

    async def installed(self, name: str, namespace: str) -> bool:
        return (namespace, name) in self.clusters

    async def ready(self, name: str, namespace: str) -> tuple[bool, str]:
        cluster = self.clusters.get((namespace, name))
        if cluster is None:
            return False, "not running"
        for proc in [*cluster.plane.group.processes, *cluster.syncers.processes]:
            if not proc.alive():
                return False, f"process {proc.name} exited: {proc.log_tail(5)}"
        if not cluster.health_ports:
            return False, "syncer not started"
        ready = await asyncio.to_thread(cluster.readyz)
        if ready is None:
            return False, "syncer not ready"
        return True, ""

    async def sleep(self, name: str, namespace: str) -> None:
        async with self._lock:
            cluster = self.clusters.pop((namespace, name), None)
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        await delete_synced_pods(self.client, name, namespace)

    async def wake(self, deployment: Deployment) -> None:
        await self.deploy(deployment)

    async def uninstall(self, name: str, namespace: str) -> None:
        async with self._lock:
            cluster = self.clusters.pop((namespace, name), None)
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        await delete_synced_pods(self.client, name, namespace)
        shutil.rmtree(self._dir(name, namespace), ignore_errors=True)

    def pids(self) -> list[int]:
        return [pid for cluster in self.clusters.values() for pid in cluster.pids()]

    async def close(self) -> None:
        async with self._lock:
            clusters = list(self.clusters.values())
            self.clusters.clear()
        for cluster in clusters:
            await asyncio.to_thread(cluster.stop)
