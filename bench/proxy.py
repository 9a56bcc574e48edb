"""API proxy benchmark: what the front door costs, against going straight to the servers behind it.

Starts a local host cluster and a virtual cluster with its syncer (which serves the proxy), then in
the same run, alternating the two paths so drift hits both equally:

* GET one ConfigMap and LIST a namespace of `--objects` ConfigMaps, sequentially (latency p50/p99)
  and with `--concurrency` clients (requests/s): through the proxy (client certificate of the virtual
  admin, so the proxy impersonates) vs straight to the virtual API server with the same certificate;
* port-forward throughput: `kubectl port-forward` of one pod (kwok pipes it into `cat`), `--mb` MiB
  echoed back, through proxy → host API server → kwok vs `kubectl port-forward` of the host pod
  straight through the host API server.

Targets (issue 5): p50 overhead <= 2 ms, proxy/direct throughput >= 0.8. Prints a table with the
ratios and writes JSON (bench/results/proxy.json).

    python bench/proxy.py [--requests 2000] [--concurrency 16] [--mb 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from controlplane.local.host import HostCluster
from controlplane.local.tenant import LocalVirtualCluster
from syncer.kube import kubeconfigs
from syncer.translate.names import host_name

NAMESPACE = "bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class Row:
    """One measure on both paths. `paired` is the median over rounds of the per-round ratio
    (throughput) or difference (latency): each round measures both paths back to back, so a noisy
    neighbour on this machine affects a pair, not just one side."""

    what: str
    direct: float
    proxy: float
    unit: str
    paired: float | None = None

    @property
    def ratio(self) -> float:
        if self.paired is not None and self.unit != "ms":
            return self.paired
        return self.proxy / self.direct if self.direct else float("nan")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by these processes (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def admin_ssl(vcluster: LocalVirtualCluster) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(vcluster.plane.pki.server_ca))
    cert, key = vcluster.plane.pki.client_pair("admin")
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def timed_requests(
    session: aiohttp.ClientSession, url: str, count: int, concurrency: int
) -> tuple[list[float], float]:
    """Latencies (ms) of `count` GETs made by `concurrency` workers, and the wall time (s)."""
    latencies: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url}: {resp.status}")
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - began


async def api_benchmark(
    vcluster: LocalVirtualCluster, *, requests: int, concurrency: int, rounds: int = 8
) -> list[Row]:
    direct = vcluster.plane.server
    proxy = f"https://127.0.0.1:{vcluster.proxy_ports[0]}"
    syncer_pids = vcluster.syncers.pids()
    ctx = admin_ssl(vcluster)
    connector = aiohttp.TCPConnector(ssl=ctx, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        paths = {
            "GET configmap": f"/api/v1/namespaces/{NAMESPACE}/configmaps/bench-0",
            "LIST configmaps": f"/api/v1/namespaces/{NAMESPACE}/configmaps",
        }
        rows: list[Row] = []
        for label, path in paths.items():
            # Warm both paths (connections, TLS sessions, the API server's caches).
            for base in (direct, proxy):
                await timed_requests(session, base + path, 50, 4)
            p50: dict[str, list[float]] = {direct: [], proxy: []}
            p99: dict[str, list[float]] = {direct: [], proxy: []}
            rps: dict[str, list[float]] = {direct: [], proxy: []}
            cpu: dict[str, float] = {direct: 0.0, proxy: 0.0}
            per_round = requests // rounds
            for _ in range(rounds):  # alternate so that drift (GC, other load) hits both paths
                for base in (direct, proxy):
                    lat, _ = await timed_requests(session, base + path, per_round, 1)
                    p50[base].append(percentile(lat, 0.5))
                    p99[base].append(percentile(lat, 0.99))
                    before = cpu_seconds(syncer_pids)
                    _, wall = await timed_requests(session, base + path, per_round, concurrency)
                    cpu[base] += cpu_seconds(syncer_pids) - before
                    rps[base].append(per_round / wall)

            def median(values: list[float]) -> float:
                return percentile(values, 0.5)

            def paired(values: list[tuple[float, float]], op: str) -> float:
                return median([(p - d) if op == "-" else (p / d) for d, p in values])

            rows.append(
                Row(
                    f"{label} p50",
                    median(p50[direct]),
                    median(p50[proxy]),
                    "ms",
                    paired(list(zip(p50[direct], p50[proxy], strict=True)), "-"),
                )
            )
            rows.append(Row(f"{label} p99", median(p99[direct]), median(p99[proxy]), "ms"))
            rows.append(
                Row(
                    f"{label} req/s (x{concurrency})",
                    median(rps[direct]),
                    median(rps[proxy]),
                    "req/s",
                    paired(list(zip(rps[direct], rps[proxy], strict=True)), "/"),
                )
            )
            # Contention-independent: CPU the proxy process spends per request (the syncer's
            # controllers are idle here, so that is the proxy's cost).
            rows.append(
                Row(
                    f"{label} proxy CPU per request",
                    cpu[direct] * 1000 / (per_round * rounds),
                    cpu[proxy] * 1000 / (per_round * rounds),
                    "ms",
                )
            )
        return rows


@contextlib.contextmanager
def port_forward(kubectl: str, kubeconfig: Path, pod: str, namespace: str) -> Iterator[int]:
    argv = [
        kubectl,
        f"--kubeconfig={kubeconfig}",
        "port-forward",
        pod,
        "-n",
        namespace,
        "--address=127.0.0.1",
        ":8080",
    ]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "Forwarding from 127.0.0.1:" not in line:
                raise RuntimeError(f"port-forward failed: {line}{proc.stderr.read() if proc.stderr else ''}")
            yield int(line.split("127.0.0.1:")[1].split()[0])
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def echo_throughput(port: int, total: int, chunk: int = 256 * 1024) -> float:
    """MiB/s of a `total`-byte echo through a forwarded port (sent and received concurrently)."""
    block = os.urandom(chunk)
    received = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        # Warm-up round trip: the stream is set up lazily on the first connection's first bytes.
        sock.sendall(b"x")
        sock.recv(1)
        started = time.perf_counter()

        def send() -> None:
            for _ in range(total // chunk):
                sock.sendall(block)

        sender = threading.Thread(target=send)
        sender.start()
        while received < (total // chunk) * chunk:
            data = sock.recv(1 << 20)
            if not data:
                raise RuntimeError("stream ended early")
            received += len(data)
        elapsed = time.perf_counter() - started
        sender.join()
    return received / elapsed / (1024 * 1024)


def port_forward_benchmark(
    host: HostCluster, vcluster: LocalVirtualCluster, pod: str, mib: int, rounds: int = 5
) -> list[Row]:
    kubectl = host.binaries.path("kubectl")
    proxy_kc = kubeconfigs.write(
        vcluster.state_dir / "bench-proxy.kubeconfig",
        vcluster.plane.pki.kubeconfig(f"https://127.0.0.1:{vcluster.proxy_ports[0]}", "admin"),
    )
    total = mib * 1024 * 1024
    results: dict[str, list[float]] = {"direct": [], "proxy": []}
    syncer_pids = vcluster.syncers.pids()
    proxy_cpu = 0.0
    hpod = host_name(pod, NAMESPACE, vcluster.name)
    for _ in range(rounds):
        with port_forward(kubectl, host.kubeconfig, hpod, vcluster.namespace) as p:
            results["direct"].append(echo_throughput(p, total))
        with port_forward(kubectl, proxy_kc, pod, NAMESPACE) as p:
            before = cpu_seconds(syncer_pids)
            results["proxy"].append(echo_throughput(p, total))
            proxy_cpu += cpu_seconds(syncer_pids) - before
    pairs = zip(results["direct"], results["proxy"], strict=True)
    return [
        Row(
            f"port-forward {mib} MiB echo (median of {rounds})",
            percentile(results["direct"], 0.5),
            percentile(results["proxy"], 0.5),
            "MiB/s",
            percentile([p / d for d, p in pairs], 0.5),
        ),
        # Each echoed MiB crosses the proxy twice (to the pod and back).
        Row("port-forward proxy CPU per echoed MiB", 0.0, proxy_cpu * 1000 / (mib * rounds), "ms"),
    ]


def prepare(vcluster: LocalVirtualCluster, objects: int) -> str:
    kubectl = vcluster.host.binaries.path("kubectl")
    kc = str(vcluster.plane.admin_kubeconfig_path)

    def run(*args: str, stdin: str | None = None) -> str:
        return subprocess.run(
            [kubectl, f"--kubeconfig={kc}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout

    run("create", "namespace", NAMESPACE)
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"bench-{i}", "namespace": NAMESPACE},
            "data": {"k": "v" * 200},
        }
        for i in range(objects)
    ]
    run("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    run("run", "echo", "--image=registry.invalid/app:1", "-n", NAMESPACE)
    run("wait", "--for=condition=Ready", "pod/echo", "-n", NAMESPACE, "--timeout=120s")
    return "echo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per path and mode")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--objects", type=int, default=100, help="ConfigMaps in the listed namespace")
    parser.add_argument("--mb", type=int, default=64, help="MiB echoed through port-forward per round")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "proxy.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        host = HostCluster(Path(tmp) / "host", nodes=1)
        vcluster = LocalVirtualCluster(host, "bench", "bench-host", Path(tmp) / "vc")
        try:
            host.start()
            vcluster.start()
            pod = prepare(vcluster, args.objects)
            rows = asyncio.run(api_benchmark(vcluster, requests=args.requests, concurrency=args.concurrency))
            rows.extend(port_forward_benchmark(host, vcluster, pod, args.mb))
        finally:
            vcluster.stop()
            host.stop()

    print(f"\n{'':44} {'direct':>10} {'proxy':>10} {'ratio':>7}")
    for row in rows:
        print(f"{row.what:44} {row.direct:10.2f} {row.proxy:10.2f} {row.ratio:7.2f}  {row.unit}")
    by_name = {row.what: row for row in rows}
    overheads = {
        name.removesuffix(" p50"): row.paired if row.paired is not None else row.proxy - row.direct
        for name, row in by_name.items()
        if name.endswith(" p50")
    }
    throughput = {
        name: row.ratio for name, row in by_name.items() if row.unit in ("req/s", "MiB/s") and row.direct
    }
    load = os.getloadavg()
    print()
    for name, ms in overheads.items():
        print(f"p50 overhead {name}: {ms:.2f} ms (target <= 2 ms): {'ok' if ms <= 2 else 'MISSED'}")
    for name, ratio in throughput.items():
        print(
            f"throughput {name}: {ratio:.2f} of direct (target >= 0.8): {'ok' if ratio >= 0.8 else 'MISSED'}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "settings": vars(args) | {"out": str(args.out)},
                "rows": [asdict(r) | {"ratio": r.ratio} for r in rows],
                "p50_overhead_ms": overheads,
                "throughput_ratio": throughput,
                "cpus": os.cpu_count(),
                "loadavg_at_end": load,
            },
            indent=2,
        )
        + "\n"
    )
    print(
        f"\n{os.cpu_count()} CPUs, load average at the end {load[0]:.1f}"
        " (other work on the machine skews the ratios; CPU per request does not depend on it)"
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
