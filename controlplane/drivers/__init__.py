"""Deploy drivers: how one virtual cluster gets into (and out of) its host namespace.

The reconcile code is the same for every driver; it only calls this small interface. `local` runs the
virtual control plane and the syncer as local processes (the embedded default), `helm` installs the
charts/vcluster chart with `helm upgrade --install`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from syncer.kube.client import KubeClient
from syncer.kube.resources import PODS
from syncer.translate.names import MARKER_LABEL


@dataclass(frozen=True)
class Deployment:
    """What to deploy: the release name, its host namespace, the merged values and the syncer's args."""

    name: str
    namespace: str
    values: dict[str, Any] = field(default_factory=dict)
    syncer_args: tuple[str, ...] = ()


class Driver(Protocol):
    name: str
    # Whether the controller can reach the virtual API server of what this driver deploys. When
    # True, an instance whose template has `objects` stays Pending until they are applied inside the
    # virtual cluster; when False, readiness is the driver's own (`ready`) and the objects are
    # applied only once a kubeconfig Secret exists and its server answers (a condition says so).
    virtual_api: bool

    async def deploy(self, deployment: Deployment) -> None:
        """Install or upgrade. Returns once the install was handed over (not necessarily ready)."""

    async def installed(self, name: str, namespace: str) -> bool:
        """Whether something is installed (a restarted controller redeploys what is missing)."""

    async def ready(self, name: str, namespace: str) -> tuple[bool, str]:
        """(ready, why not)."""

    async def sleep(self, name: str, namespace: str) -> None:
        """Scale to zero: control plane and syncer stopped, synced pods gone, data kept."""

    async def wake(self, deployment: Deployment) -> None:
        """Undo `sleep`."""

    async def uninstall(self, name: str, namespace: str) -> None:
        """Remove everything the driver installed (the namespace itself is the caller's)."""

    async def close(self) -> None:
        """Stop whatever this process runs (the local driver's processes)."""


async def delete_synced_pods(client: KubeClient, name: str, namespace: str) -> int:
    """Delete the pods the syncer of `name` created in `namespace` (what sleeping means for workloads)."""
    pods = await client.list(PODS, namespace, label_selector=f"{MARKER_LABEL}={name}")
    for pod in pods.get("items") or []:
        await client.delete(PODS, pod["metadata"]["name"], namespace, grace_period_seconds=0, missing_ok=True)
    return len(pods.get("items") or [])
