"""Reference collection runs on every pod event (index functions): it must never change the pod."""

from __future__ import annotations

import copy

from syncer.translate.pods import referenced_configmaps, referenced_pvcs, referenced_secrets

POD = {
    "metadata": {"name": "web", "namespace": "team"},
    "spec": {
        "containers": [
            {
                "name": "c",
                "image": "x",
                "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}}],
                "envFrom": [{"secretRef": {"name": "sec-env"}}],
            }
        ],
        "imagePullSecrets": [{"name": "pull"}],
        "volumes": [
            {"name": "cfg", "configMap": {"name": "cm-vol"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}},
            {
                "name": "scratch",
                "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}},
            },
        ],
    },
}


def test_references_are_found_and_the_pod_is_untouched() -> None:
    pod = copy.deepcopy(POD)
    assert referenced_configmaps(pod) == {"cm-env", "cm-vol"}
    assert referenced_secrets(pod) == {"sec-env", "pull"}
    assert referenced_pvcs(pod) == {"claim", "web-scratch"}
    assert pod == POD


def test_tokens_are_refreshed_at_80_percent_of_their_real_lifetime() -> None:
    from syncer.kinds.pods import token_refresh_at

    now = 1_700_000_000.0
    # The server may extend a token (kube-api-access: 3607 s → a year); its expiry is what counts.
    assert token_refresh_at(now, "2023-11-14T22:30:00Z", 3607) == now + 0.8 * 1000
    assert token_refresh_at(now, None, 600) == now + 480
    assert token_refresh_at(now, "not a time", 600) == now + 480
