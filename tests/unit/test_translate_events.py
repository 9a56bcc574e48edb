"""Host events → virtual events, for our objects only and without host names."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncer.translate.events import virtual_event, virtual_event_name
from syncer.translate.names import host_name

HOST_POD = "web-7d9c8b6f5d-x2x9k-x-default-x-vc1"
SYNCED = {
    ("Pod", HOST_POD): ("default", "web-7d9c8b6f5d-x2x9k", "vuid-pod"),
    ("PersistentVolumeClaim", "data-x-default-x-vc1"): ("default", "data", "vuid-pvc"),
}


def resolve(kind: str, name: str) -> tuple[str, str, str] | None:
    return SYNCED.get((kind, name))


def scheduler_event(**overrides: Any) -> dict[str, Any]:
    """A host Event as the scheduler records it (core/v1 view of an events.k8s.io event)."""
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{HOST_POD}.18eaa4287eb86b3b",
            "namespace": "team-a",
            "uid": "host-event-uid",
            "resourceVersion": "812",
            "creationTimestamp": "2026-11-23T09:58:15Z",
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": HOST_POD,
            "namespace": "team-a",
            "uid": "host-pod-uid",
            "resourceVersion": "700",
            "fieldPath": "spec.containers{web}",
        },
        "reason": "Scheduled",
        "message": f"Successfully assigned team-a/{HOST_POD} to kwok-node-0",
        "type": "Normal",
        "count": 1,
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": "2026-11-23T09:58:15.292215Z",
        "action": "Binding",
        "source": {},
        "reportingComponent": "default-scheduler",
        "reportingInstance": "default-scheduler-host1",
        "someFutureField": {"hostName": HOST_POD},
    }
    event.update(overrides)
    return event


def test_event_about_a_synced_pod_is_translated() -> None:
    event = virtual_event(scheduler_event(), resolve=resolve)
    assert event == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web-7d9c8b6f5d-x2x9k.18eaa4287eb86b3b", "namespace": "default"},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "fieldPath": "spec.containers{web}",
            "namespace": "default",
            "name": "web-7d9c8b6f5d-x2x9k",
            "uid": "vuid-pod",
        },
        "reason": "Scheduled",
        "message": "Successfully assigned default/web-7d9c8b6f5d-x2x9k to kwok-node-0",
        "type": "Normal",
        "count": 1,
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": "2026-11-23T09:58:15.292215Z",
        "action": "Binding",
        "source": {},
        "reportingComponent": "default-scheduler",
        "reportingInstance": "default-scheduler-host1",
    }


def test_events_about_objects_we_did_not_sync_are_not_copied() -> None:
    foreign = scheduler_event()
    foreign["involvedObject"] = {**foreign["involvedObject"], "name": "host-admin-pod"}
    assert virtual_event(foreign, resolve=resolve) is None
    assert virtual_event(scheduler_event(involvedObject={}), resolve=resolve) is None


def test_other_host_names_in_the_message_are_redacted_with_the_vcluster_name() -> None:
    message = (
        f'MountVolume.SetUp failed for volume "cfg" : configmap "cfg-x-default-x-vc1" not found ({HOST_POD})'
    )
    event = virtual_event(
        scheduler_event(message=message, reason="FailedMount"), resolve=resolve, vcluster="vc1"
    )
    assert event is not None
    assert (
        event["message"]
        == 'MountVolume.SetUp failed for volume "cfg" : configmap "cfg" not found (web-7d9c8b6f5d-x2x9k)'
    )


def test_related_object_is_mapped_or_dropped() -> None:
    related = {
        "kind": "PersistentVolumeClaim",
        "name": "data-x-default-x-vc1",
        "namespace": "team-a",
        "apiVersion": "v1",
    }
    event = virtual_event(
        scheduler_event(related=related, message="claim team-a/data-x-default-x-vc1"), resolve=resolve
    )
    assert event is not None
    assert event["related"] == {
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": "default",
        "name": "data",
        "uid": "vuid-pvc",
    }
    assert event["message"] == "claim default/data"
    unknown = {"kind": "Node", "name": "kwok-node-0"}
    event = virtual_event(scheduler_event(related=unknown), resolve=resolve)
    assert event is not None and "related" not in event


def test_event_names_are_deterministic_and_valid() -> None:
    assert virtual_event_name(f"{HOST_POD}.abc", HOST_POD, "web") == "web.abc"
    other = virtual_event_name("unrelated-name", HOST_POD, "web")
    assert other == virtual_event_name("unrelated-name", HOST_POD, "web")
    assert other.startswith("web.") and HOST_POD not in other
    long_virtual = "a" * 250
    name = virtual_event_name(f"{HOST_POD}.18eaa4287eb86b3b", HOST_POD, long_virtual)
    assert len(name) <= 253 and name.endswith(".18eaa4287eb86b3b")


names = st.lists(
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True), min_size=1, max_size=3
).map(".".join)


@given(names, st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True), st.text(alphabet=" ,:;!?()[]'", max_size=20))
def test_no_host_name_ever_reaches_the_virtual_event(name: str, namespace: str, noise: str) -> None:
    hname = host_name(name, namespace, "vc1")
    event = scheduler_event(
        metadata={"name": f"{hname}.1234", "namespace": "team-a"},
        involvedObject={"kind": "Pod", "name": hname, "namespace": "team-a", "uid": "h"},
        message=f"{noise} team-a/{hname} {hname}: {noise}",
    )
    result = virtual_event(
        event, resolve=lambda kind, h: (namespace, name, "v") if h == hname else None, vcluster="vc1"
    )
    assert result is not None
    assert hname not in json.dumps(result)
    assert result["involvedObject"]["name"] == name and result["metadata"]["namespace"] == namespace
