"""The proxy's HTTPS listener: TLS settings, the serving certificate and its lifetime.

The serving certificate is issued here, at start-up, by the virtual cluster's *server* CA — the CA
every kubeconfig of the virtual cluster already trusts — so clients cannot tell the proxy from the
API server it fronts. Its SANs are every name a client may use for us: `localhost`, `127.0.0.1`, the
in-cluster names of the virtual `kubernetes` Service (pods reach us through it), the syncer's host
Service by every DNS spelling, that Service's ClusterIP, and `--tls-san` values. The ClusterIP is
only known once the host Service exists, so a background loop looks it up and issues a new
certificate whenever the SAN set changes; it is loaded into the live `SSLContext`, which OpenSSL
applies to every handshake from then on (open connections keep theirs). Certificates live in memory
only; the key never touches a file longer than loading it takes.

TLS: 1.2 or newer, HTTP/1.1 only (ALPN `http/1.1`: upgrades and long watches need HTTP/1.1, and
aiohttp speaks nothing else). Client certificates are requested but optional (`CERT_OPTIONAL`) and,
when sent, must chain to the virtual cluster's client CA or the handshake fails; tokens and anonymous
callers need no certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path

from aiohttp import web

from syncer.kube import pki
from syncer.kube.client import KubeClient, KubeError
from syncer.kube.resources import SERVICES
from syncer.options import SyncerOptions

from . import metrics
from .handler import Proxy

__all__ = ["ServingCertificate", "desired_sans", "serve", "server_ssl_context"]

log = logging.getLogger(__name__)

SAN_REFRESH_SECONDS = 60.0
SAN_RETRY_SECONDS = 2.0


def desired_sans(options: SyncerOptions, cluster_ip: str | None) -> list[str]:
    """Every name and address a client may dial the proxy by, in a stable order."""
    service, namespace, domain = options.service_name, options.host_service_namespace, options.cluster_domain
    sans = [
        "localhost",
        "127.0.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{domain}",
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{domain}",
    ]
    if cluster_ip:
        sans.append(cluster_ip)
    sans.extend(options.tls_sans)
    return [san for san in dict.fromkeys(sans) if san]


def server_ssl_context(client_ca: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


class ServingCertificate:
    """The proxy's serving certificate, re-issued into one live `SSLContext` when the SANs change."""

    def __init__(self, ca: pki.KeyPair, context: ssl.SSLContext) -> None:
        self.ca = ca
        self.context = context
        self.sans: frozenset[str] = frozenset()

    @classmethod
    def from_options(cls, options: SyncerOptions) -> ServingCertificate:
        ca = pki.KeyPair.read(Path(options.server_ca_cert), Path(options.server_ca_key))
        return cls(ca, server_ssl_context(Path(options.client_ca_cert)))

    def ensure(self, sans: Iterable[str]) -> bool:
        """Issue and load a certificate for `sans` unless the current one has exactly those; True if
        a new one was loaded."""
        wanted = list(sans)
        if frozenset(wanted) == self.sans:
            return False
        pair = pki.issue(self.ca, "vcluster-py-proxy", sans=wanted, server=True)
        with tempfile.TemporaryDirectory(prefix="vcluster-py-proxy-") as tmp:  # mode 0700
            cert_path, key_path = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert_path.write_bytes(pair.cert_pem)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pair.key_pem)
            self.context.load_cert_chain(str(cert_path), str(key_path))
        previous, self.sans = self.sans, frozenset(wanted)
        if previous:
            metrics.CERT_ROTATIONS.inc()
        log.info("Serving certificate issued", extra={"sans": wanted})
        return True


async def host_service_ip(host: KubeClient, options: SyncerOptions) -> str | None:
    svc = await host.get(SERVICES, options.service_name, options.host_service_namespace)
    ip = (svc.get("spec") or {}).get("clusterIP")
    return str(ip) if ip and ip != "None" else None


async def keep_certificate_current(
    cert: ServingCertificate, host: KubeClient, options: SyncerOptions
) -> None:
    """Follow the host Service's ClusterIP for the life of the proxy (it changes only if the Service
    is recreated); poll quickly until it is known, then every SAN_REFRESH_SECONDS."""
    while True:
        ip: str | None = None
        try:
            ip = await host_service_ip(host, options)
        except KubeError as exc:
            log.debug("Host service not readable yet", extra={"err": str(exc)})
        if ip is not None:
            cert.ensure(desired_sans(options, ip))
        await asyncio.sleep(SAN_REFRESH_SECONDS if ip else SAN_RETRY_SECONDS)


def build_server(proxy: Proxy) -> web.Server:
    return web.Server(
        proxy.handle,
        # A client that goes away cancels its handler: a silent watch must not hold an upstream
        # connection until the API server's own timeout.
        handler_cancellation=True,
        access_log=None,
        # Selectors and Impersonate-Extra values can be long; kube-apiserver accepts far more.
        max_line_size=32768,
        max_field_size=32768,
        # Bodies are relayed as they are, compressed or not.
        auto_decompress=False,
    )


async def serve(options: SyncerOptions, virtual: KubeClient, host: KubeClient) -> None:
    """Serve the API proxy on `options.proxy_address:proxy_port` until cancelled."""
    cert = ServingCertificate.from_options(options)
    cert.ensure(desired_sans(options, None))
    proxy = Proxy(options, virtual, host)
    runner = web.ServerRunner(build_server(proxy), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, options.proxy_address, options.proxy_port, ssl_context=cert.context, backlog=1024
        )
        await site.start()
        log.info("API proxy listening", extra={"address": f"{options.proxy_address}:{options.proxy_port}"})
        await keep_certificate_current(cert, host, options)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(_shutdown(runner, proxy))


async def _shutdown(runner: web.ServerRunner, proxy: Proxy) -> None:
    try:
        await runner.cleanup()
    finally:
        await proxy.close()
