"""`vcluster-py syncer`: flags (named as vcluster named them) → SyncerOptions → the running syncer."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from collections.abc import Coroutine
from typing import Any

from .options import POD_SECURITY_LEVELS, OptionsError, SyncerOptions, effective_resources


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "syncer",
        help="run the syncer (and the API proxy) beside a virtual control plane",
        description="Sync virtual pods, services, PVCs and ingresses into one host namespace.",
    )
    p.add_argument("--name", default="vcluster", help="virtual cluster name; suffixes every host object")
    p.add_argument(
        "--target-namespace",
        default=None,
        help="host namespace that receives synced objects (default: the pod's own namespace)",
    )
    p.add_argument("--host-kubeconfig", default=None, help="host cluster kubeconfig (default: in-cluster)")
    p.add_argument(
        "--virtual-kubeconfig",
        "--kube-config",
        dest="virtual_kubeconfig",
        default="/data/server/cred/admin.kubeconfig",
        help="virtual cluster admin kubeconfig (k3s writes it here)",
    )
    p.add_argument("--service-name", default="vcluster", help="host Service that fronts this syncer")
    p.add_argument("--service-namespace", default=None)
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument(
        "--pod-security-standard",
        default="baseline",
        help=f"checked before a pod reaches the host: {', '.join(POD_SECURITY_LEVELS)}",
    )
    p.add_argument(
        "--disable-sync-resources",
        action="append",
        default=[],
        help="comma-separated resources not to sync, e.g. ingresses",
    )
    p.add_argument(
        "--sync", action="append", default=[], help="comma-separated +name / -name to enable or disable"
    )
    p.add_argument("--workers", type=int, default=4, help="reconcile workers per resource")
    p.add_argument("--resync-period", type=float, default=300.0, help="seconds between drift passes")
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--lease-duration", type=float, default=15.0)
    p.add_argument("--renew-deadline", type=float, default=10.0)
    p.add_argument("--retry-period", type=float, default=2.0)
    p.add_argument("--health-address", default="127.0.0.1:8080", help="/healthz, /readyz, /metrics")
    p.add_argument("--apply-coredns", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--proxy-address", default="0.0.0.0", help="where the API proxy listens")
    p.add_argument("--proxy-port", "--port", dest="proxy_port", type=int, default=8443)
    p.add_argument("--tls-san", action="append", default=[], help="extra SAN for the proxy's certificate")
    p.add_argument("--server-ca-cert", default="/data/server/tls/server-ca.crt")
    p.add_argument("--server-ca-key", default="/data/server/tls/server-ca.key")
    p.add_argument("--client-ca-cert", default="/data/server/tls/client-ca.crt")
    p.add_argument("--out-kube-config-secret", default=None, help="host Secret to write a user kubeconfig to")
    p.add_argument("--out-kube-config-server", default=None)
    p.set_defaults(run=run)


def _current_namespace() -> str | None:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip()
    except OSError:
        return None


def options_from_args(args: argparse.Namespace) -> SyncerOptions:
    target = args.target_namespace or _current_namespace()
    if not target:
        raise OptionsError("--target-namespace is required outside a pod")
    return SyncerOptions(
        name=args.name,
        target_namespace=target,
        virtual_kubeconfig=args.virtual_kubeconfig,
        host_kubeconfig=args.host_kubeconfig,
        service_name=args.service_name,
        service_namespace=args.service_namespace,
        cluster_domain=args.cluster_domain,
        pod_security_standard=args.pod_security_standard,
        resources=effective_resources(args.disable_sync_resources, args.sync),
        workers=args.workers,
        resync_seconds=args.resync_period,
        leader_elect=args.leader_elect,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        health_address=args.health_address,
        identity=f"{socket.gethostname()}-{os.getpid()}",
        apply_coredns=args.apply_coredns,
        out_kube_config_secret=args.out_kube_config_secret,
        out_kube_config_server=args.out_kube_config_server,
        proxy_address=args.proxy_address,
        proxy_port=args.proxy_port,
        tls_sans=tuple(args.tls_san),
        server_ca_cert=args.server_ca_cert,
        server_ca_key=args.server_ca_key,
        client_ca_cert=args.client_ca_cert,
    )


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    # The CLI is the layer that composes the syncer and the proxy; neither imports the other.
    from proxy.server import serve as serve_proxy

    from .app import run_syncer

    return _run_async(run_syncer(options, side_services=[serve_proxy]))


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (Linux), asyncio otherwise."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - non-Linux
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
