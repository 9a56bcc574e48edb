"""Syncer lifecycle on real clusters: drift passes write nothing, a restart converges without
touching foreign objects, and a standby takes over when the leader dies."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from controlplane.local.tenant import LocalVirtualCluster
from syncer.translate.names import host_name
from tests.e2e.test_syncer_pods import get_json, host_pod, wait_running
from tests.support import Kubectl, eventually

pytestmark = pytest.mark.e2e

EXCLUDED_KINDS = {"Event", "Lease"}  # events are copied as they happen; the lease is renewed on a timer


def metric_sum(text: str, name: str, exclude_kinds: set[str] = frozenset()) -> float:  # type: ignore[assignment]
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.match(rf"{name}(\{{[^}}]*\}})?\s+([0-9.e+-]+)", line)
        if not match:
            continue
        labels = match.group(1) or ""
        kind = re.search(r'kind="([^"]*)"', labels)
        if kind and kind.group(1) in exclude_kinds:
            continue
        total += float(match.group(2))
    return total


def test_drift_passes_write_nothing_when_nothing_changed(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, vns: str
) -> None:
    vc_kubectl("run", "idle", "--image=registry.invalid/app:1", "-n", vns)
    wait_running(vc_kubectl, "idle", vns)

    def two_passes_without_writes() -> bool:
        text = vcluster.metrics()
        writes = metric_sum(text, "vcluster_writes_total", EXCLUDED_KINDS)
        passes = metric_sum(text, "vcluster_syncer_resyncs_total")
        assert passes >= 1, "no drift pass ran"
        eventually(
            lambda: metric_sum(vcluster.metrics(), "vcluster_syncer_resyncs_total") >= passes + 2,
            timeout=30,
            what="two more drift passes",
        )
        return metric_sum(vcluster.metrics(), "vcluster_writes_total", EXCLUDED_KINDS) == writes

    # Every pass re-reconciles every key: a reconcile that wrote on a no-op would write on every pass,
    # and this would never become true.
    eventually(two_passes_without_writes, timeout=120, interval=0.5, what="two drift passes with zero writes")


FOREIGN_POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{owner: someone-else}}}}
spec: {{containers: [{{name: c, image: registry.invalid/theirs:1}}]}}
"""

ORPHAN_CM = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {ns}
  labels: {{vcluster.loft.sh/managed-by: {vc}, vcluster.loft.sh/namespace: {vns}}}
  annotations:
    vcluster.loft.sh/object-name: nothing-here
    vcluster.loft.sh/object-namespace: {vns}
    vcluster.loft.sh/object-kind: ConfigMap
data: {{x: "1"}}
"""


def test_restart_converges_and_never_touches_foreign_objects(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    hns, vc = vcluster.namespace, vcluster.name
    for name in ("stays", "gone", "evicted"):
        vc_kubectl("run", name, "--image=registry.invalid/app:1", "-n", vns)
    for name in ("stays", "gone", "evicted"):
        wait_running(vc_kubectl, name, vns)
    vcluster.stop_syncers()
    try:
        # While the syncer is down: changes on both sides, and objects that are not ours.
        vc_kubectl("run", "new", "--image=registry.invalid/app:1", "-n", vns)
        vc_kubectl("delete", "pod", "gone", "-n", vns, "--grace-period=0", "--force")
        host_kubectl("delete", "pod", host_name("evicted", vns, vc), "-n", hns, "--wait=true")
        foreign_name = host_name("squatted", vns, vc)
        host_kubectl("apply", "-f", "-", stdin=FOREIGN_POD.format(name=foreign_name, ns=hns))
        vc_kubectl("run", "squatted", "--image=registry.invalid/app:1", "-n", vns)
        orphan = host_name("nothing-here", vns, vc)
        host_kubectl("apply", "-f", "-", stdin=ORPHAN_CM.format(name=orphan, ns=hns, vc=vc, vns=vns))
        host_kubectl("create", "configmap", "unrelated", "-n", hns, "--from-literal=k=v")
        foreign_before = get_json(host_kubectl, "pod", foreign_name, "-n", hns)
        unrelated_before = get_json(host_kubectl, "configmap", "unrelated", "-n", hns)
    finally:
        vcluster.start_syncer()

    wait_running(vc_kubectl, "new", vns)
    assert host_pod(host_kubectl, vcluster, "new", vns) is not None
    eventually(
        lambda: host_pod(host_kubectl, vcluster, "gone", vns) is None,
        timeout=60,
        what="orphan host pod deleted",
    )
    eventually(
        lambda: get_json(vc_kubectl, "pod", "evicted", "-n", vns) is None,
        timeout=60,
        what="evicted pod not resurrected",
    )
    assert host_pod(host_kubectl, vcluster, "evicted", vns) is None
    eventually(
        lambda: get_json(host_kubectl, "configmap", orphan, "-n", hns) is None,
        timeout=60,
        what="marked orphan deleted",
    )
    assert get_json(vc_kubectl, "pod", "stays", "-n", vns) is not None
    assert host_pod(host_kubectl, vcluster, "stays", vns) is not None

    def refused() -> bool:
        items = json.loads(vc_kubectl("get", "events", "-n", vns, "-o", "json").stdout)["items"]
        return any(e["reason"] == "SyncError" and e["involvedObject"]["name"] == "squatted" for e in items)

    eventually(refused, timeout=30, what="SyncError for the pod whose host name is taken")
    foreign_after = get_json(host_kubectl, "pod", foreign_name, "-n", hns)
    assert foreign_after is not None and foreign_before is not None
    assert foreign_after["metadata"]["uid"] == foreign_before["metadata"]["uid"]
    assert foreign_after["metadata"]["labels"] == {"owner": "someone-else"}
    assert "annotations" not in foreign_after["metadata"] or not any(
        k.startswith("vcluster.loft.sh/") for k in foreign_after["metadata"]["annotations"]
    )
    unrelated_after = get_json(host_kubectl, "configmap", "unrelated", "-n", hns)
    assert unrelated_after == unrelated_before
    host_kubectl("delete", "pod", foreign_name, "-n", hns, "--wait=false")
    host_kubectl("delete", "configmap", "unrelated", "-n", hns)


def test_two_syncers_elect_one_leader_and_fail_over(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    first = vcluster.syncers.processes[0]
    standby = vcluster.start_syncer(wait_leader=False)
    index = len(vcluster.health_ports) - 1
    eventually(lambda: vcluster.readyz(index) == "standby", timeout=30, what="second syncer on standby")
    assert vcluster.readyz(0) == "leader"
    lease = get_json(host_kubectl, "lease", f"vcluster-py-{vcluster.name}-syncer", "-n", vcluster.namespace)
    assert lease is not None
    holder = lease["spec"]["holderIdentity"]
    # The leader dies without handing over (SIGKILL): the standby takes over once the lease expires.
    assert first.pid is not None
    os.killpg(first.pid, signal.SIGKILL)
    started = time.monotonic()
    eventually(lambda: vcluster.readyz(index) == "leader", timeout=60, what="standby became leader")
    took = time.monotonic() - started
    new_holder = get_json(
        host_kubectl, "lease", f"vcluster-py-{vcluster.name}-syncer", "-n", vcluster.namespace
    )
    assert new_holder is not None and new_holder["spec"]["holderIdentity"] != holder
    print(f"failover took {took:.1f}s")
    # The new leader syncs.
    vc_kubectl("run", "after-failover", "--image=registry.invalid/app:1", "-n", vns)
    wait_running(vc_kubectl, "after-failover", vns)
    # Back to one syncer for the other tests, at index 0.
    assert standby.alive()
    vcluster.stop_syncers()
    vcluster.start_syncer()
