"""Pod sync benchmark: how fast virtual pods reach the host, compared with writing them directly.

Starts a local host cluster and a virtual cluster with its syncer, then for each N:

* burst: create N pods in the virtual cluster as fast as the API allows (C concurrent creates);
  measure when each host copy is first seen (host watch) and when the virtual pod shows Running
  after the host pod did (status back-sync);
* baseline, same run: the same pod bodies written straight to the host API server with the same
  HTTP client and concurrency — the syncer can at best match that rate;
* paced: pods at a fixed 20/s, for the create → host-seen latency a steady user sees;
* syncer RSS before and after, per synced pod.

Latencies are measured from the client's create response to the watch event (creationTimestamp
has one-second resolution). Prints a table and writes JSON (bench/results/sync_pods.json).

    python bench/sync_pods.py --pods 100 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.local.host import HostCluster
from controlplane.local.tenant import LocalVirtualCluster
from syncer.kube.client import KubeClient
from syncer.kube.resources import NAMESPACES, PODS
from syncer.translate.names import ANN_OBJECT_NAME, MARKER_LABEL, NAMESPACE_LABEL

CLIENT_QPS, CLIENT_BURST = 200.0, 400  # what the syncer's host client uses


def pod(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def bench_clients(vc: LocalVirtualCluster) -> tuple[KubeClient, KubeClient]:
    """The benchmark's own clients of the virtual and the host API server (admin credentials)."""
    vclient = KubeClient.from_kubeconfig(
        vc.plane.admin_kubeconfig_path, name="bench-virtual", qps=CLIENT_QPS, burst=CLIENT_BURST
    )
    hclient = KubeClient.from_kubeconfig(
        vc.host.kubeconfig, name="bench-host", qps=CLIENT_QPS, burst=CLIENT_BURST
    )
    return vclient, hclient


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    """User+system CPU seconds of each named process (and of this benchmark process)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for name, pid in {**processes, "bench-client": os.getpid()}.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cluster_processes(vc: LocalVirtualCluster) -> dict[str, int]:
    host = vc.host
    groups = [vc.plane.group, vc.syncers] + ([host.group] if isinstance(host, HostCluster) else [])
    return {p.name: p.pid for g in groups for p in g.processes if p.pid}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Run:
    pods: int
    mode: str
    seconds: float = 0.0
    rate: float = 0.0
    host_seen_p50_ms: float = 0.0
    host_seen_p99_ms: float = 0.0
    status_back_p50_ms: float = 0.0
    status_back_p99_ms: float = 0.0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    extra: dict[str, float] = field(default_factory=dict)


async def _watch(
    client: KubeClient,
    namespace: str,
    seen: dict[str, float],
    running: dict[str, float],
    key: str,
    stop: asyncio.Event,
) -> None:
    listed = await client.list(PODS, namespace)
    rv = listed["metadata"]["resourceVersion"]
    async for event in client.watch(PODS, namespace, resource_version=rv, timeout_seconds=600):
        obj = event.get("object") or {}
        if event.get("type") == "BOOKMARK" or not obj.get("metadata"):
            continue
        name = (obj["metadata"].get("annotations") or {}).get(key, "") if key else obj["metadata"]["name"]
        now = time.perf_counter()
        seen.setdefault(name, now)
        if (obj.get("status") or {}).get("phase") == "Running":
            running.setdefault(name, now)
        if stop.is_set():
            return


async def create_all(
    client: KubeClient, namespace: str, names: list[str], concurrency: int, pace: float | None
) -> dict[str, float]:
    created: dict[str, float] = {}
    sem = asyncio.Semaphore(concurrency)

    async def one(name: str, at: float) -> None:
        if pace:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        async with sem:
            await client.create(PODS, pod(name, namespace), namespace)
            created[name] = time.perf_counter()

    start = time.perf_counter()
    await asyncio.gather(*(one(n, start + i / pace if pace else start) for i, n in enumerate(names)))
    return created


async def wait_for(condition: Any, limit: float) -> None:
    deadline = time.perf_counter() + limit
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.05)


async def through_syncer(
    vc: LocalVirtualCluster, n: int, concurrency: int, pace: float | None, tag: str
) -> Run:
    vclient, hclient = bench_clients(vc)
    ns = f"bench-{tag}-{n}"
    await vclient.create(NAMESPACES, namespace(ns))
    names = [f"p{i}" for i in range(n)]
    host_seen: dict[str, float] = {}
    host_running: dict[str, float] = {}
    virtual_seen: dict[str, float] = {}
    virtual_running: dict[str, float] = {}
    stop = asyncio.Event()
    syncer_pid = vc.syncers.processes[0].pid or 0
    run = Run(pods=n, mode=f"syncer{'-paced' if pace else ''}", rss_before_kib=rss_kib(syncer_pid))
    async with asyncio.TaskGroup() as tasks:
        watchers = [
            tasks.create_task(_watch(hclient, vc.namespace, host_seen, host_running, ANN_OBJECT_NAME, stop)),
            tasks.create_task(_watch(vclient, ns, virtual_seen, virtual_running, "", stop)),
        ]
        await asyncio.sleep(0.5)  # let both watches open before the first create
        cpu_before = cpu_seconds(cluster_processes(vc))
        start = time.perf_counter()
        created = await create_all(vclient, ns, names, concurrency, pace)
        await wait_for(lambda: all(x in host_seen for x in names), 600)
        run.seconds = max(host_seen[x] for x in names) - start
        run.extra["virtual_create_rate"] = n / (max(created.values()) - start)
        _cpu_delta(run, cpu_before, cpu_seconds(cluster_processes(vc)))
        await wait_for(lambda: all(x in virtual_running for x in names), 600)
        stop.set()
        for w in watchers:
            w.cancel()
    lat = [(host_seen[x] - created[x]) * 1000 for x in names]
    back = [(virtual_running[x] - host_running[x]) * 1000 for x in names if x in host_running]
    run.rate = n / run.seconds
    run.host_seen_p50_ms, run.host_seen_p99_ms = percentile(lat, 0.5), percentile(lat, 0.99)
    run.status_back_p50_ms, run.status_back_p99_ms = percentile(back, 0.5), percentile(back, 0.99)
    run.rss_after_kib = rss_kib(syncer_pid)
    run.extra["rss_growth_kib_per_pod"] = (run.rss_after_kib - run.rss_before_kib) / n
    await vclient.close()
    await hclient.close()
    return run


async def direct(host: HostCluster, vc: LocalVirtualCluster, n: int, concurrency: int) -> Run:
    client = KubeClient.from_kubeconfig(
        host.kubeconfig, name="bench-direct", qps=CLIENT_QPS, burst=CLIENT_BURST
    )
    ns = f"bench-direct-{n}"
    await client.create(NAMESPACES, namespace(ns))
    names = [f"p{i}" for i in range(n)]
    cpu_before = cpu_seconds(cluster_processes(vc))
    start = time.perf_counter()
    created = await create_all(client, ns, names, concurrency, None)
    run = Run(pods=n, mode="direct-to-host", seconds=max(created.values()) - start)
    run.rate = n / run.seconds
    _cpu_delta(run, cpu_before, cpu_seconds(cluster_processes(vc)))
    await client.delete(NAMESPACES, ns)  # free the nodes for the syncer's run
    await client.close()
    return run


async def drain(vc: LocalVirtualCluster, vclient: KubeClient, hclient: KubeClient) -> None:
    """Delete the earlier runs' virtual namespaces and wait until the syncer removed their host pods,
    so the next measurement starts from an empty cluster."""
    for item in (await vclient.list(NAMESPACES))["items"]:
        if item["metadata"]["name"].startswith("bench-"):
            await vclient.delete(NAMESPACES, item["metadata"]["name"])
    selector = f"{MARKER_LABEL}={vc.name}"

    async def host_pods_left() -> int:
        items = (await hclient.list(PODS, vc.namespace, label_selector=selector))["items"]
        labels = [item["metadata"].get("labels") or {} for item in items]
        return sum(1 for label in labels if label.get(NAMESPACE_LABEL, "").startswith("bench-"))

    deadline = time.perf_counter() + 600
    while await host_pods_left() > 0:
        if time.perf_counter() > deadline:
            raise TimeoutError("the earlier runs' host pods were not removed")
        await asyncio.sleep(1.0)


async def catch_up(vc: LocalVirtualCluster, n: int, concurrency: int) -> tuple[Run, Run]:
    """Two measurements with the syncer stopped, then one as it restarts.

    * ceiling: the same N pods written to the virtual AND the host API server at once, each with the
      same concurrency. That is all a syncer that cost nothing could do — every pod is written to both
      API servers, on the same cores — so its host rate bounds the burst mode on this machine.
    * catch-up: the syncer started against the N virtual pods of that run, working off the backlog
      (tokens, secret, host create); its host-create rate from the first host copy to the last.
    """
    vclient, hclient = bench_clients(vc)
    await drain(vc, vclient, hclient)
    ns, direct_ns = f"bench-backlog-{n}", f"bench-ceiling-{n}"
    names = [f"p{i}" for i in range(n)]
    vc.stop_syncers()
    await vclient.create(NAMESPACES, namespace(ns))
    await hclient.create(NAMESPACES, namespace(direct_ns))
    cpu_before = cpu_seconds(cluster_processes(vc))
    start = time.perf_counter()
    _, direct_created = await asyncio.gather(
        create_all(vclient, ns, names, concurrency, None),
        create_all(hclient, direct_ns, names, concurrency, None),
    )
    ceiling = Run(pods=n, mode="ceiling-both-writes", seconds=max(direct_created.values()) - start)
    ceiling.rate = n / ceiling.seconds
    _cpu_delta(ceiling, cpu_before, cpu_seconds(cluster_processes(vc)))
    await hclient.delete(NAMESPACES, direct_ns)
    host_seen: dict[str, float] = {}
    host_running: dict[str, float] = {}
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        watcher = tasks.create_task(
            _watch(hclient, vc.namespace, host_seen, host_running, ANN_OBJECT_NAME, stop)
        )
        await asyncio.sleep(0.5)
        await asyncio.to_thread(vc.start_syncer)
        cpu_before = cpu_seconds(cluster_processes(vc))
        await wait_for(lambda: all(x in host_seen for x in names), 600)
        cpu_after = cpu_seconds(cluster_processes(vc))
        stop.set()
        watcher.cancel()
    first, last = min(host_seen[x] for x in names), max(host_seen[x] for x in names)
    backlog = Run(pods=n, mode="syncer-catch-up", seconds=last - first)
    backlog.rate = (n - 1) / backlog.seconds if backlog.seconds > 0 else float("nan")
    _cpu_delta(backlog, cpu_before, cpu_after)
    await vclient.close()
    await hclient.close()
    return ceiling, backlog


def _cpu_delta(run: Run, before: dict[str, float], after: dict[str, float]) -> None:
    for proc, used in after.items():
        run.extra[f"cpu_s:{proc}"] = round(used - before.get(proc, used), 2)


COLUMNS = (
    ("mode", "<16", lambda r: r.mode),
    ("pods", ">6", lambda r: r.pods),
    ("secs", ">8.2f", lambda r: r.seconds),
    ("pods/s", ">9.1f", lambda r: r.rate),
    ("seen p50 ms", ">12.0f", lambda r: r.host_seen_p50_ms),
    ("seen p99 ms", ">12.0f", lambda r: r.host_seen_p99_ms),
    ("back p50 ms", ">12.0f", lambda r: r.status_back_p50_ms),
    ("back p99 ms", ">12.0f", lambda r: r.status_back_p99_ms),
    ("RSS KiB/pod", ">12.1f", lambda r: r.extra.get("rss_growth_kib_per_pod", 0.0)),
)


def table(runs: list[Run]) -> str:
    head = "".join(f"{name:{spec.split('.')[0].rstrip('f')}}" for name, spec, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in runs:
        lines.append("".join(f"{value(r):{spec}}" for _, spec, value in COLUMNS))
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    host = HostCluster(state / "host", nodes=2, max_pods_per_node=5000)
    host.start()
    # The syncer gets as many workers as the direct client has concurrent requests: same concurrency.
    vc = LocalVirtualCluster(
        host, "bench", "bench-host", state / "vc", syncer_args=(f"--workers={args.concurrency}",)
    )
    results: list[Run] = []
    try:
        vc.start()
        for n in args.pods:
            results.append(await direct(host, vc, n, args.concurrency))
            results.append(await through_syncer(vc, n, args.concurrency, None, "burst"))
        results.append(await through_syncer(vc, args.paced_pods, args.concurrency, 20.0, "paced"))
        for n in args.pods:  # last: these restart the syncer
            results.extend(await catch_up(vc, n, args.concurrency))
    finally:
        vc.stop()
        host.stop()
    ratios: dict[str, dict[str, float]] = {}
    for n in args.pods:
        rate = {r.mode: r.rate for r in results if r.pods == n}
        base = rate["direct-to-host"]
        ratios[str(n)] = {
            "syncer": rate["syncer"] / base,
            "catch_up": rate["syncer-catch-up"] / base,
            "ceiling": rate["ceiling-both-writes"] / base,
        }
    paced = next(r for r in results if r.mode == "syncer-paced")
    print(table(results))
    for n, ratio in ratios.items():
        print(
            f"throughput ratio syncer/direct at {n} pods: {ratio['syncer']:.2f} (target >= 0.8); "
            f"catching up a backlog: {ratio['catch_up']:.2f}; "
            f"ceiling for any syncer here (both writes, no syncer): {ratio['ceiling']:.2f}"
        )
    print(f"paced 20 pods/s: create → host seen p99 {paced.host_seen_p99_ms:.0f} ms (target <= 1000 ms)")
    print("CPU seconds per process during each run (where the two cores went):")
    for r in results:
        cpu = {k.split(":", 1)[1]: v for k, v in r.extra.items() if k.startswith("cpu_s:")}
        if cpu:
            busiest = sorted(cpu.items(), key=lambda kv: -kv[1])
            print(f"  {r.mode:<18} {r.pods:>5}: " + ", ".join(f"{k} {v:.2f}" for k, v in busiest))
    return {
        "runs": [asdict(r) for r in results],
        "throughput_ratio": ratios,
        "paced_p99_ms": paced.host_seen_p99_ms,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--paced-pods", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sync_pods.json")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the clusters on SIGTERM too
    report = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
