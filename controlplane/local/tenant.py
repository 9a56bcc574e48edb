"""One virtual cluster on a local host cluster, as local processes: the `local` deploy driver's unit.

What a Helm install creates in the host namespace, made directly: a ServiceAccount with exactly the
syncer's Role (syncer.host_rbac), the Service that fronts the syncer (its ClusterIP becomes the
virtual `kubernetes` Service), and then the virtual control plane plus a `vcluster-py syncer` process
that reaches the host ONLY with that ServiceAccount's token — the same permissions it has in a pod.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from syncer import host_rbac
from syncer.kube import kubeconfigs

from .binaries import Binaries
from .processes import ManagedProcess, ProcessGroup, free_port, port_free, wait_until
from .virtual import VirtualControlPlane

log = logging.getLogger(__name__)


def _readyz(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


class _ServerCA(Protocol):
    @property
    def server_ca(self) -> Path: ...


class HostAccess(Protocol):
    """What a tenant needs of its host: HostCluster, or a host reached through a kubeconfig."""

    @property
    def service_cidr(self) -> str: ...

    @property
    def binaries(self) -> Binaries: ...

    @property
    def server(self) -> str: ...

    @property
    def pki(self) -> _ServerCA: ...

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]: ...


@dataclass
class LocalVirtualCluster:
    host: HostAccess
    name: str
    namespace: str
    state_dir: Path
    syncer_args: tuple[str, ...] = ()
    service_name: str = "vcluster"
    plane: VirtualControlPlane = field(init=False)

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()
        self.plane = VirtualControlPlane(
            self.state_dir / "data", service_cidr=self.host.service_cidr, binaries=self.host.binaries
        )
        self.syncers = ProcessGroup()
        self.host_kubeconfig = self.state_dir / "host-syncer.kubeconfig"
        self.health_ports: list[int] = []
        self.proxy_ports: list[int] = []

    @property
    def service_account(self) -> str:
        return f"vc-{self.name}"

    def prepare_host(self) -> None:
        """Namespace, ServiceAccount, Role/RoleBinding, the syncer's Service, and a token kubeconfig."""
        sa = self.service_account
        objects = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}},
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": sa, "namespace": self.namespace},
            },
            host_rbac.role(sa, self.namespace),
            host_rbac.role_binding(sa, self.namespace, sa),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": self.service_name,
                    "namespace": self.namespace,
                    "labels": {"app": "vcluster"},
                },
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]},
            },
        ]
        self.host.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
        token = self.host.kubectl(
            "create", "token", sa, "-n", self.namespace, "--duration=48h"
        ).stdout.strip()
        kubeconfigs.write(
            self.host_kubeconfig,
            kubeconfigs.build(
                server=self.host.server,
                ca_pem=self.host.pki.server_ca.read_bytes(),
                name=f"{self.name}-syncer",
                token=token,
                namespace=self.namespace,
            ),
        )

    def start(self, *, syncer: bool = True) -> LocalVirtualCluster:
        try:
            self.prepare_host()
            self.plane.start()
            if syncer:
                self.start_syncer()
        except BaseException:
            self.stop()
            raise
        return self

    def syncer_argv(self, health_port: int, proxy_port: int, extra: tuple[str, ...]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "controlplane",
            "--log-format=json",
            "syncer",
            f"--name={self.name}",
            f"--target-namespace={self.namespace}",
            f"--host-kubeconfig={self.host_kubeconfig}",
            f"--virtual-kubeconfig={self.plane.admin_kubeconfig_path}",
            f"--service-name={self.service_name}",
            f"--health-address=127.0.0.1:{health_port}",
            "--proxy-address=127.0.0.1",
            f"--proxy-port={proxy_port}",
            f"--server-ca-cert={self.plane.pki.server_ca}",
            f"--server-ca-key={self.plane.pki.server_ca_key}",
            f"--client-ca-cert={self.plane.pki.client_ca}",
            *self.syncer_args,
            *extra,
        ]

    def _stable_proxy_port(self) -> int:
        """The first syncer's proxy keeps its port across restarts (sleep/wake, a new controller):
        kubeconfigs handed out earlier point at it. A new port only if another process took it."""
        remembered = self.state_dir / "proxy-port"
        try:
            port = int(remembered.read_text())
            if port_free(port):
                return port
        except (OSError, ValueError):
            pass
        port = free_port()
        remembered.parent.mkdir(parents=True, exist_ok=True)
        remembered.write_text(str(port))
        return port

    def start_syncer(self, *extra: str, wait_leader: bool = True, timeout: float = 60) -> ManagedProcess:
        index = len(self.syncers.processes)
        health, proxy = free_port(), self._stable_proxy_port() if index == 0 else free_port()
        proc = self.syncers.start(
            ManagedProcess(
                f"syncer-{self.name}-{index}",
                self.syncer_argv(health, proxy, extra),
                self.state_dir / "logs" / f"syncer-{index}.log",
            )
        )
        self.health_ports.append(health)
        self.proxy_ports.append(proxy)
        expected = "leader" if wait_leader else ""
        wait_until(
            lambda: (_readyz(health) or "\0").startswith(expected),
            timeout=timeout,
            what=f"syncer {proc.name} ready{' as leader' if wait_leader else ''}",
            watch=[proc, *self.plane.group.processes],
            interval=0.2,
        )
        return proc

    def metrics(self, index: int = 0) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.health_ports[index]}/metrics", timeout=5
        ) as resp:
            return str(resp.read().decode())

    def readyz(self, index: int = 0) -> str | None:
        return _readyz(self.health_ports[index])

    def stop_syncers(self) -> None:
        self.syncers.stop()
        self.syncers = ProcessGroup()
        self.health_ports.clear()
        self.proxy_ports.clear()

    def pids(self) -> list[int]:
        return [*self.syncers.pids(), *self.plane.pids()]

    def stop(self) -> None:
        self.syncers.stop()
        self.plane.stop()
