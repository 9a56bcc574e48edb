"""The running syncer: clients, leader election, the engine, the health server — and their lifetimes.

Start-up order follows vcluster: wait until the virtual control plane answers and its `default`
ServiceAccount exists, find the ClusterIP of the host Service that fronts us (pods reach the virtual
API through it), then elect a leader. Only the leader runs controllers; every replica serves health.
Losing the lease ends the process with a non-zero code so the kubelet restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import coredns
from .controller import Engine, SyncContext
from .health import serve as serve_health
from .informers import Informers
from .kinds import build_syncers
from .kube import kubeconfigs
from .kube.client import ApiError, KubeClient
from .kube.resources import SECRETS, SERVICE_ACCOUNTS, SERVICES
from .leader import LeaderElector
from .options import SyncerOptions
from .recorder import EventRecorder

log = logging.getLogger(__name__)


class LostLeadership(Exception):
    pass


def host_client(options: SyncerOptions) -> KubeClient:
    if options.host_kubeconfig:
        return KubeClient.from_kubeconfig(options.host_kubeconfig, name="host", qps=200, burst=400)
    return KubeClient.in_cluster(name="host", qps=200, burst=400)


def virtual_client(options: SyncerOptions) -> KubeClient:
    return KubeClient.from_kubeconfig(options.virtual_kubeconfig, name="virtual", qps=1000, burst=2000)


START_UP_WAIT_SECONDS = 600.0


async def _poll(what: str, attempt: Any, *, interval: float = 1.0) -> Any:
    """Retry `attempt()` until it returns non-None; log what we wait for now and then.

    Gives up after START_UP_WAIT_SECONDS (vcluster waits ten minutes for k3s too).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_UP_WAIT_SECONDS
    last_log = 0.0
    while True:
        try:
            result = await attempt()
            if result is not None:
                return result
        except (ApiError, OSError) as err:
            if loop.time() - last_log > 10:
                log.info("waiting", extra={"for": what, "err": str(err)})
                last_log = loop.time()
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def wait_for_virtual_cluster(client: KubeClient) -> None:
    async def attempt() -> object:
        return await client.get(SERVICE_ACCOUNTS, "default", "default")

    await _poll("virtual default/default ServiceAccount", attempt)


async def resolve_kube_service_ip(client: KubeClient, options: SyncerOptions) -> str:
    async def attempt() -> str | None:
        svc = await client.get(SERVICES, options.service_name, options.host_service_namespace)
        ip = svc.get("spec", {}).get("clusterIP")
        return str(ip) if ip and ip != "None" else None

    ip: str = await _poll(f"host service {options.host_service_namespace}/{options.service_name}", attempt)
    return ip


_INLINED = (
    ("certificate-authority", "certificate-authority-data"),
    ("client-certificate", "client-certificate-data"),
    ("client-key", "client-key-data"),
)


def user_kubeconfig(options: SyncerOptions) -> dict[str, Any]:
    """The virtual admin kubeconfig, pointed at the proxy (`--out-kube-config-server`, else localhost).

    k3s writes its admin kubeconfig with file references under /data; a user has none of those files,
    so every reference is inlined as `*-data`.
    """
    source = Path(options.virtual_kubeconfig)
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    server = options.out_kube_config_server or f"https://localhost:{options.proxy_port}"
    entries = [c.setdefault("cluster", {}) for c in config.get("clusters") or []]
    entries += [u.setdefault("user", {}) for u in config.get("users") or []]
    for entry in entries:
        for file_key, data_key in _INLINED:
            path = entry.pop(file_key, None)
            if path:
                full = Path(path) if Path(path).is_absolute() else source.parent / path
                entry[data_key] = base64.b64encode(full.read_bytes()).decode("ascii")
    for cluster in config.get("clusters") or []:
        cluster["cluster"]["server"] = server
    return config


async def write_kubeconfig_secret(hclient: KubeClient, options: SyncerOptions) -> None:
    """The user kubeconfig in a host Secret (`--out-kube-config-secret`), as vcluster's chart expects."""
    if not options.out_kube_config_secret:
        return
    config = user_kubeconfig(options)
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": options.out_kube_config_secret, "namespace": options.target_namespace},
        "type": "Opaque",
        "stringData": {"config": kubeconfigs.dump(config)},
    }
    try:
        await hclient.create(SECRETS, body, options.target_namespace)
    except ApiError as err:
        if not err.already_exists:
            raise
        await hclient.replace(SECRETS, body)


# Something that runs beside the controllers on every replica (the API proxy), given both clients.
SideService = Callable[[SyncerOptions, KubeClient, KubeClient], Coroutine[Any, Any, None]]


async def run_syncer(options: SyncerOptions, side_services: Sequence[SideService] = ()) -> int:
    log.info(
        "starting syncer",
        extra={
            "vcluster": options.name,
            "targetNamespace": options.target_namespace,
            "resources": sorted(options.resources),
        },
    )
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert main_task is not None
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    vclient, hclient = virtual_client(options), host_client(options)
    engine: Engine | None = None
    elector = LeaderElector(
        hclient,
        options.target_namespace,
        f"vcluster-py-{options.name}-syncer",
        options.identity,
        lease_duration=options.lease_duration,
        renew_deadline=options.renew_deadline,
        retry_period=options.retry_period,
    )

    def ready() -> tuple[bool, str]:
        if engine is None:
            return False, "starting"
        if elector.is_leader.is_set():
            return (True, "leader") if engine.ready.is_set() else (False, "caches syncing")
        return True, "standby"

    code = 0
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(serve_health(options.health_address, ready), name="health")
            for service in side_services:
                tasks.create_task(
                    service(options, vclient, hclient), name=getattr(service, "__name__", "side")
                )
            await wait_for_virtual_cluster(vclient)
            kube_ip = await resolve_kube_service_ip(hclient, options)
            ctx = SyncContext(
                options=options,
                virtual_client=vclient,
                host_client=hclient,
                virtual=Informers(vclient, cluster="virtual"),
                host=Informers(hclient, cluster="host"),
                recorder=EventRecorder(vclient),
                kube_service_ip=kube_ip,
            )
            engine = Engine(ctx, build_syncers(options))
            if options.leader_elect:
                election = tasks.create_task(elector.run(), name="leader-election")
                await elector.is_leader.wait()
            if options.apply_coredns and options.syncs("services"):
                await coredns.apply(vclient, options.cluster_domain)
            await write_kubeconfig_secret(hclient, options)
            engine_task = tasks.create_task(engine.run(), name="engine")
            if options.leader_elect:
                await election
                engine_task.cancel()
                raise LostLeadership()
    except* LostLeadership:
        code = 1
    except* asyncio.CancelledError:
        log.info("stopping syncer")
    finally:
        await asyncio.shield(elector.release())
        await vclient.close()
        await hclient.close()
    return code
