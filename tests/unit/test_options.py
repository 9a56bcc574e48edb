"""Which resources the syncer syncs, from vcluster's two flag forms, and start-up refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.cli import main
from syncer.options import DEFAULT_ENABLED, KNOWN_RESOURCES, OptionsError, SyncerOptions, effective_resources


def test_defaults_match_vcluster() -> None:
    assert effective_resources() == DEFAULT_ENABLED
    assert "storageclasses" not in DEFAULT_ENABLED and "pods" in DEFAULT_ENABLED


def test_disable_sync_resources_as_loft_docs_use_it() -> None:
    enabled = effective_resources(["ingresses"])
    assert "ingresses" not in enabled
    assert enabled == DEFAULT_ENABLED - {"ingresses"}


def test_disable_is_trimmed_and_case_insensitive_and_repeatable() -> None:
    enabled = effective_resources([" Ingresses , events", "nodes"])
    assert not {"ingresses", "events", "nodes"} & enabled


def test_sync_form_enables_and_disables() -> None:
    enabled = effective_resources(sync=["-ingresses,+storageclasses", "priorityclasses"])
    assert "ingresses" not in enabled
    assert {"storageclasses", "priorityclasses"} <= enabled


def test_sync_is_applied_after_disable() -> None:
    assert "ingresses" in effective_resources(["ingresses"], ["+ingresses"])


@pytest.mark.parametrize(
    ("disable", "sync", "flag"),
    [(["ingress"], [], "--disable-sync-resources"), ([], ["-podz"], "--sync"), ([], ["+"], "--sync")],
)
def test_unknown_names_are_an_error_listing_the_valid_ones(
    disable: list[str], sync: list[str], flag: str
) -> None:
    with pytest.raises(OptionsError) as err:
        effective_resources(disable, sync)
    message = str(err.value)
    assert flag in message
    for name in KNOWN_RESOURCES:
        assert name in message


@given(st.sets(st.sampled_from(KNOWN_RESOURCES)))
def test_disabling_any_subset_removes_exactly_it(names: set[str]) -> None:
    assert effective_resources([",".join(sorted(names))]) == DEFAULT_ENABLED - names


def test_unknown_pod_security_level_names_the_valid_ones() -> None:
    with pytest.raises(OptionsError, match="privileged, baseline, restricted"):
        SyncerOptions(
            name="vc", target_namespace="ns", virtual_kubeconfig="x", pod_security_standard="strict"
        )


def test_cli_stops_at_start_up_on_unknown_resource(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["syncer", "--target-namespace=ns", "--disable-sync-resources=ingresss"])
    assert code == 1
    err = capsys.readouterr().err
    assert "unknown resource 'ingresss'" in err and "persistentvolumeclaims" in err
