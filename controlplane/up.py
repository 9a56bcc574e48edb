"""`vcluster-py up`: the embedded default — a host cluster and one virtual cluster on this machine.

Runs in the foreground until Ctrl-C (or SIGTERM), then stops everything it started. The state
directory keeps the kubeconfigs and every component's log; it is wiped at the next start, since a
local host cluster is disposable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from syncer.kube import kubeconfigs

from .local.host import HostCluster
from .local.tenant import LocalVirtualCluster

DEFAULT_NAME = "vcluster"
DEFAULT_NAMESPACE = "vcluster"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vcluster-py" / "up"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "up",
        help="run a local host cluster and a virtual cluster in the foreground",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    parser.add_argument("--nodes", type=int, default=2, help="kwok nodes in the host cluster")
    parser.add_argument("--name", default=DEFAULT_NAME, help="virtual cluster name")
    parser.add_argument(
        "--namespace", default=DEFAULT_NAMESPACE, help="host namespace the virtual cluster lives in"
    )
    parser.add_argument(
        "--exit-after-ready",
        action="store_true",
        help="stop everything as soon as it is ready (a smoke test of this command)",
    )
    parser.set_defaults(run=run)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    # Both signals explicitly: a process started in the background inherits SIGINT as *ignored*, and
    # Python then installs no Ctrl-C handler of its own.
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    host = HostCluster(state / "host", nodes=args.nodes)
    vcluster = LocalVirtualCluster(host, args.name, args.namespace, state / "vcluster" / args.name)
    try:
        host.start()
        vcluster.start()
        host_kc = host.write_kubeconfig(state / "kubeconfig-host.yaml")
        v_kc = state / "kubeconfig-vcluster.yaml"
        kubeconfigs.write(
            v_kc, vcluster.plane.pki.kubeconfig(f"https://127.0.0.1:{vcluster.proxy_ports[0]}", "admin")
        )
        _print_ready(args, host, vcluster, host_kc, v_kc)
        if args.exit_after_ready:
            return 0
        while True:
            for proc in [*host.group.processes, *vcluster.plane.group.processes, *vcluster.syncers.processes]:
                proc.check_alive()
            time.sleep(1)
    except (KeyboardInterrupt, _Stop):
        print("\nstopping…", file=sys.stderr)
        return 0
    finally:
        vcluster.stop()
        host.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_ready(
    args: argparse.Namespace,
    host: HostCluster,
    vcluster: LocalVirtualCluster,
    host_kc: Path,
    v_kc: Path,
) -> None:
    kubectl = host.binaries.path("kubectl")
    print(
        f"""
vcluster-py is up (host cluster {host.startup_seconds.get("total", 0):.1f}s, \
virtual control plane {vcluster.plane.startup_seconds.get("total", 0):.1f}s, syncer running).

  host cluster      {host.server}   ({args.nodes} kwok nodes)
  virtual cluster   {args.name} in host namespace {args.namespace}
                    front door (proxy) https://127.0.0.1:{vcluster.proxy_ports[0]}, \
API server {vcluster.plane.server}

Use them:
  export KUBECONFIG={v_kc}      # the virtual cluster
  {kubectl} get namespaces
  {kubectl} --kubeconfig {host_kc} get pods -n {args.namespace}   # the host side

Logs: {args.state_dir}/host/logs, {args.state_dir}/vcluster/{args.name}/logs (syncer) and .../data/logs
Ctrl-C stops everything.""",
        flush=True,
    )
