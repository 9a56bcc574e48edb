"""The `helm` driver: `helm upgrade --install` of charts/vcluster with the rendered values.

What "Ready" means here: every pod of the release (`app=vcluster,release=<name>`) has condition
Ready=True. That is all the driver checks. The controller does not wait for the virtual API server
behind it (`virtual_api = False`): the kubeconfig the syncer writes (Secret `vc-<name>`) names an
in-cluster address the controller generally cannot reach, and on the local test host the pod runs on
a kwok node, where containers are simulated (k3s and the syncer never run, kwok only marks the pod
Running and Ready), so there is no virtual API at all. A template's `objects` for such an instance
are applied when the Secret exists and its server answers; until then the instance is Ready with
condition VirtualClusterAppsAndObjectsSynced=False (reason WaitingForVirtualAPI), re-checked every
30 seconds.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import yaml

from syncer.kube.client import KubeClient
from syncer.kube.resources import PODS, PVCS, ResourceType

from . import Deployment, delete_synced_pods

log = logging.getLogger(__name__)

STATEFULSETS = ResourceType("apps", "v1", "statefulsets", "StatefulSet")
DEFAULT_CHART = Path(__file__).resolve().parents[2] / "charts" / "vcluster"


class HelmError(RuntimeError):
    pass


def _pod_ready(pod: dict[str, object]) -> bool:
    status = pod.get("status")
    if not isinstance(status, dict):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


class HelmDriver:
    name = "helm"
    virtual_api = False  # Ready = the release's pods are Ready; see the module docstring

    def __init__(
        self, client: KubeClient, host_kubeconfig: Path, *, helm: Path, chart: Path = DEFAULT_CHART
    ) -> None:
        self.client = client
        self.host_kubeconfig = host_kubeconfig
        self.helm = helm
        self.chart = chart

    async def _helm(self, *args: str, check: bool = True, stdin: bytes | None = None) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            str(self.helm),
            f"--kubeconfig={self.host_kubeconfig}",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate(stdin)
        text = out.decode(errors="replace")
        code = proc.returncode or 0
        if check and code != 0:
            raise HelmError(f"helm {args[0]} failed ({code}): {text.strip()[-2000:]}")
        return code, text

    async def deploy(self, deployment: Deployment) -> None:
        if not self.chart.is_dir():
            raise HelmError(f"chart not found at {self.chart}")
        await self._helm(
            "upgrade",
            "--install",
            deployment.name,
            str(self.chart),
            "--namespace",
            deployment.namespace,
            "--values",
            "-",
            stdin=yaml.safe_dump(deployment.values).encode(),
        )

    async def installed(self, name: str, namespace: str) -> bool:
        code, _ = await self._helm("status", name, "--namespace", namespace, check=False)
        return code == 0

    async def ready(self, name: str, namespace: str) -> tuple[bool, str]:
        pods = await self.client.list(PODS, namespace, label_selector=f"app=vcluster,release={name}")
        items = pods.get("items") or []
        if not items:
            return False, "no vcluster pod yet"
        if all(_pod_ready(p) for p in items):
            return True, ""
        return False, "vcluster pod not ready"

    async def _scale(self, name: str, namespace: str, replicas: int) -> None:
        await self.client.patch(STATEFULSETS, name, {"spec": {"replicas": replicas}}, namespace)

    async def sleep(self, name: str, namespace: str) -> None:
        await self._scale(name, namespace, 0)
        await delete_synced_pods(self.client, name, namespace)

    async def wake(self, deployment: Deployment) -> None:
        await self._scale(deployment.name, deployment.namespace, 1)

    async def uninstall(self, name: str, namespace: str) -> None:
        code, text = await self._helm("uninstall", name, "--namespace", namespace, "--wait", check=False)
        if code != 0 and "not found" not in text:
            raise HelmError(f"helm uninstall failed ({code}): {text.strip()[-2000:]}")
        await self.client.delete(PVCS, f"data-{name}-0", namespace, missing_ok=True)
        await delete_synced_pods(self.client, name, namespace)

    async def close(self) -> None:
        return None
