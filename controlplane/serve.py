"""`vcluster-py controlplane`: the controller, the management API and /healthz /readyz /metrics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from syncer import health
from syncer.kube import pki
from syncer.kube.client import KubeClient

from .api import ManagementAPI
from .controller import Controller
from .drivers import Driver
from .drivers.helm import DEFAULT_CHART, HelmDriver
from .drivers.local import LocalDriver
from .local.binaries import Binaries

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "controlplane", help="run the control plane: VirtualClusterInstance/SpaceInstance controller and API"
    )
    p.add_argument("--host-kubeconfig", required=True, help="admin kubeconfig of the host cluster")
    p.add_argument("--driver", choices=["local", "helm"], default="local", help="default deploy driver")
    p.add_argument("--state-dir", default=".vcluster-py/controlplane", help="local driver data")
    p.add_argument("--chart", default=str(DEFAULT_CHART), help="chart directory for the helm driver")
    p.add_argument("--api-address", default="127.0.0.1:8090", help="management API (empty: off)")
    p.add_argument("--api-tls-cert", default="", help="serving certificate of the management API")
    p.add_argument("--api-tls-key", default="", help="its key (default: a self-signed pair in --state-dir)")
    p.add_argument("--api-plain-http", action="store_true", help="serve the management API without TLS")
    p.add_argument("--health-address", default="127.0.0.1:8091", help="/healthz /readyz /metrics")
    p.add_argument("--service-cidr", default="", help="host Service CIDR (default: detected)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument(
        "--syncer-arg", action="append", default=[], help="extra argument for every local syncer (repeatable)"
    )
    p.set_defaults(run=run)


def api_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """HTTPS for the management API, as Loft serves it (the seed documents' curl uses https).

    Without --api-tls-cert a CA and a serving certificate for the listen host, localhost and
    127.0.0.1 are generated once under --state-dir/api-tls (ca.crt there verifies it).
    """
    if args.api_plain_http:
        return None
    cert, key = Path(args.api_tls_cert or ""), Path(args.api_tls_key or "")
    if not args.api_tls_cert:
        directory = Path(args.state_dir) / "api-tls"
        cert, key = directory / "tls.crt", directory / "tls.key"
        if not cert.exists():
            host = args.api_address.rpartition(":")[0] or "127.0.0.1"
            ca = pki.new_ca("vcluster-py-management-ca")
            ca.write(directory / "ca.crt", directory / "ca.key")
            pki.issue(
                ca, "vcluster-py-management-api", sans=[host, "localhost", "127.0.0.1"], server=True
            ).write(cert, key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


async def _serve_api(app: web.Application, address: str, ssl_context: ssl.SSLContext | None) -> None:
    host, _, port = address.rpartition(":")
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host or "127.0.0.1", int(port), ssl_context=ssl_context).start()
        log.info("management API listening", extra={"address": address})
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(runner.cleanup())


async def serve(args: argparse.Namespace, kubeconfig: Path) -> int:
    async with KubeClient.from_kubeconfig(kubeconfig, name="host") as client:
        drivers: dict[str, Driver] = {
            "local": LocalDriver(
                client, kubeconfig, Path(args.state_dir), extra_syncer_args=tuple(args.syncer_arg)
            )
        }
        try:
            helm = Binaries.locate().helm
            drivers["helm"] = HelmDriver(client, kubeconfig, helm=helm, chart=Path(args.chart))
        except Exception as err:  # helm is optional unless asked for
            if args.driver == "helm":
                raise
            log.warning("helm driver unavailable", extra={"err": str(err)})
        controller = Controller(
            client, drivers, default_driver=args.driver, workers=args.workers, service_cidr=args.service_cidr
        )
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, main.cancel)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(controller.run())
                if args.health_address:
                    tg.create_task(health.serve(args.health_address, controller.ready))
                if args.api_address:
                    tg.create_task(
                        _serve_api(ManagementAPI(client).app(), args.api_address, api_ssl_context(args))
                    )
        except asyncio.CancelledError:
            log.info("control plane stopping")
        finally:
            for driver in drivers.values():
                await asyncio.shield(driver.close())
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(serve(args, Path(args.host_kubeconfig).resolve()))
