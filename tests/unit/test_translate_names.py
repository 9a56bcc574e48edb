"""Host names of virtual objects: vcluster-compatible, always valid, deterministic, and only as
ambiguous as the documented `-x-` case."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from syncer.translate.names import (
    host_cluster_name,
    host_name,
    is_dns1123_label,
    is_dns1123_subdomain,
    redact_host_names,
)

labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
subdomains = st.lists(labels, min_size=1, max_size=6).map(".".join).filter(lambda s: len(s) <= 253)


def vcluster_reference_rule(full: str) -> str:
    """vcluster's SafeConcatName, written from its description in the behaviour notes (§5)."""
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:10]
    return (full[:52] + "-" + digest).replace(".-", "-")


def test_short_name_is_the_joined_name() -> None:
    assert host_name("nginx", "default", "vc1") == "nginx-x-default-x-vc1"


def test_long_name_matches_vclusters_documented_example() -> None:
    name = host_name("my-very-long-deployment-name-abcdef-1234567890", "production", "vc1")
    assert name == "my-very-long-deployment-name-abcdef-1234567890-x-pro-0eb7322064"
    assert len(name) == 63


def test_cut_ending_in_a_dot_drops_the_dot_like_vcluster() -> None:
    name = "a" * 51 + ".b" * 10  # character 52 is a dot
    result = host_name(name, "ns", "vc")
    assert "." + "-" not in result
    assert result == vcluster_reference_rule(f"{name}-x-ns-x-vc")
    assert len(result) == 62
    assert is_dns1123_subdomain(result)


def test_cut_ending_in_a_dash_stays_a_valid_label() -> None:
    name = "a" * 51 + "-" + "b" * 20  # character 52 is a dash: "--" before the hash
    result = host_name(name, "ns", "vc")
    assert result[51:53] == "--"
    assert is_dns1123_label(result)


def test_dotted_short_names_keep_their_dots() -> None:
    assert host_name("app.config", "default", "vc1") == "app.config-x-default-x-vc1"


def test_253_character_subdomain_becomes_a_63_character_subdomain() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    result = host_name(name, "default", "vc1")
    assert len(result) == 63
    assert is_dns1123_subdomain(result)


@pytest.mark.parametrize("parts", [("", "ns", "vc"), ("n", "", "vc"), ("n", "ns", "")])
def test_empty_parts_are_a_programming_error(parts: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError):
        host_name(*parts)
    with pytest.raises(ValueError):
        host_cluster_name(*parts)


def test_cluster_scoped_name_includes_the_host_namespace() -> None:
    assert host_cluster_name("fast", "team-a", "vc1") == "vcluster-fast-x-team-a-x-vc1"
    long = host_cluster_name("p" * 60, "team-a", "vc1")
    assert len(long) == 63 and long.startswith("vcluster-ppp")


def test_the_documented_ambiguity_exists() -> None:
    assert host_name("web-x-prod", "team", "vc") == host_name("web", "prod-x-team", "vc")


def test_dns_validators_reject_what_kubernetes_rejects() -> None:
    assert is_dns1123_label("abc-1")
    for bad in ("abc\n", "-abc", "abc-", "ABC", "a.b", "a" * 64, ""):
        assert not is_dns1123_label(bad), bad
    assert is_dns1123_subdomain("a.b-c.d")
    for bad in ("a..b", "a.-b", ".a", "a.", "a" * 254):
        assert not is_dns1123_subdomain(bad), bad


@given(labels, labels, labels)
def test_label_names_give_valid_labels_of_at_most_63(name: str, namespace: str, vcluster: str) -> None:
    result = host_name(name, namespace, vcluster)
    assert is_dns1123_label(result)
    assert len(result) <= 63


@given(subdomains, labels, labels)
def test_subdomain_names_give_valid_subdomains_of_at_most_63(
    name: str, namespace: str, vcluster: str
) -> None:
    result = host_name(name, namespace, vcluster)
    assert is_dns1123_subdomain(result)
    assert len(result) <= 63


@given(subdomains, labels, labels)
def test_byte_compatible_with_vcluster_and_deterministic(name: str, namespace: str, vcluster: str) -> None:
    result = host_name(name, namespace, vcluster)
    assert result == vcluster_reference_rule(f"{name}-x-{namespace}-x-{vcluster}")
    assert result == host_name(name, namespace, vcluster)


@given(labels, labels)
def test_cluster_names_are_valid(name: str, host_namespace: str) -> None:
    assert is_dns1123_label(host_cluster_name(name, host_namespace, "vc1"))


@given(subdomains, labels, subdomains, labels, labels)
def test_collisions_only_in_the_ambiguous_case(
    name_a: str, namespace_a: str, name_b: str, namespace_b: str, vcluster: str
) -> None:
    """Same host name ⇒ same joined string (the `-x-` ambiguity); hash collisions (2^-40) aside."""
    assume((name_a, namespace_a) != (name_b, namespace_b))
    if host_name(name_a, namespace_a, vcluster) == host_name(name_b, namespace_b, vcluster):
        assert f"{name_a}-x-{namespace_a}" == f"{name_b}-x-{namespace_b}"


@given(labels, labels, labels, labels)
def test_every_x_split_collides(first: str, second: str, third: str, vcluster: str) -> None:
    assume(len(f"{second}-x-{third}") <= 63)
    assert host_name(f"{first}-x-{second}", third, vcluster) == host_name(
        first, f"{second}-x-{third}", vcluster
    )


# --- redaction -------------------------------------------------------------------------------------


def test_redaction_replaces_whole_names_and_qualified_forms() -> None:
    names = {"web-x-default-x-vc1": "web", "team-a/web-x-default-x-vc1": "default/web"}
    text = "Successfully assigned team-a/web-x-default-x-vc1 to node-1; pod web-x-default-x-vc1 started"
    assert redact_host_names(text, names) == "Successfully assigned default/web to node-1; pod web started"


def test_redaction_leaves_longer_names_alone() -> None:
    names = {"web-x-default-x-vc1": "web"}
    text = "web-x-default-x-vc12 and a.web-x-default-x-vc1 and web-x-default-x-vc1-2"
    assert redact_host_names(text, names) == text


def test_redaction_with_vcluster_maps_other_host_names_back() -> None:
    text = 'MountVolume.SetUp failed for volume "cfg" : configmap "app.cfg-x-default-x-vc1" not found'
    redacted = redact_host_names(text, {}, vcluster="vc1")
    assert redacted == 'MountVolume.SetUp failed for volume "cfg" : configmap "app.cfg" not found'
    assert redact_host_names(text, {}, vcluster="vc2") == text


@given(subdomains, labels)
def test_redaction_removes_every_occurrence_of_a_known_name(name: str, namespace: str) -> None:
    host = host_name(name, namespace, "vc1")
    text = f"{host}: back-off restarting {host} ({host})"
    redacted = redact_host_names(text, {host: name}, vcluster="vc1")
    assert host not in redacted
    assert redacted.count(name) >= 3
