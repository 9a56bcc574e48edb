"""Pure parts of the control plane: versions, parameters, rendering, values merge and hash, syncer args."""

from __future__ import annotations

import pytest

from controlplane import templates as tpl


def test_resolve_version_wildcards() -> None:
    versions = ["1.0.0", "1.2.0", "1.2.3", "2.0.1"]
    assert tpl.resolve_version(versions, "") == "2.0.1"
    assert tpl.resolve_version(versions, "1.x.x") == "1.2.3"
    assert tpl.resolve_version(versions, "1.2.X") == "1.2.3"
    assert tpl.resolve_version(versions, "1.0.0") == "1.0.0"
    with pytest.raises(tpl.TemplateError) as err:
        tpl.resolve_version(versions, "3.x.x")
    assert err.value.reason == "VersionNotFound"
    with pytest.raises(tpl.TemplateError) as err:
        tpl.resolve_version(versions, "1.2")
    assert err.value.reason == "VersionError"


def test_select_template_unversioned_and_versioned() -> None:
    spec = {"template": {"objects": "a"}, "parameters": [{"variable": "x"}]}
    assert tpl.select_template(spec, "") == ({"objects": "a"}, [{"variable": "x"}], "")
    assert tpl.select_template(spec, "x.x.x")[0] == {"objects": "a"}
    versioned = {
        "versions": [
            {"version": "1.0.0", "template": {"objects": "one"}},
            {"version": "1.1.0", "template": {"objects": "two"}},
        ]
    }
    assert tpl.select_template(versioned, "1.0.x")[0] == {"objects": "one"}
    assert tpl.select_template(versioned, "")[2] == "1.1.0"


def test_validate_parameters() -> None:
    defs = [
        {"variable": "name", "required": True, "validation": "^[a-z]+$"},
        {"variable": "size", "type": "number", "min": 1, "max": 5, "defaultValue": "2"},
        {"variable": "ha.enabled", "type": "boolean", "defaultValue": "false"},
        {"variable": "env", "options": ["dev", "prod"], "defaultValue": "dev"},
    ]
    out = tpl.validate_parameters(defs, {"name": "abc", "ha": {"enabled": "true"}})
    assert out == {"name": "abc", "size": 2, "ha": {"enabled": True}, "env": "dev"}
    for bad, reason_part in (
        ({}, "required"),
        ({"name": "ABC"}, "validation"),
        ({"name": "a", "size": "9"}, "maximum"),
        ({"name": "a", "size": "x"}, "not a number"),
        ({"name": "a", "env": "staging"}, "not one of"),
    ):
        with pytest.raises(tpl.TemplateError) as err:
            tpl.validate_parameters(defs, bad)
        assert err.value.reason == "ErrorSyncingParameters"
        assert reason_part in err.value.message


def test_parse_set_flags_rejects_undeclared() -> None:
    assert tpl.parse_set_flags(["a.b=1", "c=x=y"]) == {"a": {"b": "1"}, "c": "x=y"}
    with pytest.raises(ValueError, match="not a parameter"):
        tpl.parse_set_flags(["nope=1"], [{"variable": "yes"}])


def test_render() -> None:
    values = {"my-parameter": "v", "n": {"x": 3}, "loft": {"project": "p"}, "empty": ""}
    assert tpl.render_string("a {{ .Values.my-parameter }} b {{ .Values.n.x }}", values) == "a v b 3"
    assert tpl.render_string('{{ .Values.empty | default "d" }}', values) == "d"
    assert tpl.render_string("{{ .Values.loft.project | quote }}", values) == '"p"'
    assert tpl.render({"l": ["{{ .Values.n.x }}"], "k": 1}, values) == {"l": ["3"], "k": 1}
    with pytest.raises(tpl.TemplateError) as err:
        tpl.render_string("{{ .Values.x | sha256sum }}", values)
    assert err.value.reason == "ErrorRenderingTemplate"


def test_values_merge_and_hash() -> None:
    chart = {"serviceCIDR": "10.96.0.0/12", "syncer": {"extraArgs": [], "image": "a"}}
    cluster = {"serviceCIDR": "127.96.0.0/16"}
    rendered = {"syncer": {"extraArgs": ["--sync=-ingresses"]}}
    merged = tpl.merge_values(chart, cluster, rendered)
    assert merged == {
        "serviceCIDR": "127.96.0.0/16",
        "syncer": {"extraArgs": ["--sync=-ingresses"], "image": "a"},
    }
    assert chart["syncer"]["extraArgs"] == []  # inputs untouched
    assert tpl.values_hash({"a": 1, "b": 2}) == tpl.values_hash({"b": 2, "a": 1})
    assert tpl.values_hash(merged) != tpl.values_hash(chart)


def test_syncer_args_validation() -> None:
    args = tpl.syncer_extra_args({"syncer": {"extraArgs": ["--disable-sync-resources=ingresses"]}})
    assert "ingresses" not in tpl.validate_syncer_args(args)
    assert "pods" in tpl.validate_syncer_args(["--disable-sync-resources", "ingresses"])
    with pytest.raises(tpl.TemplateError) as err:
        tpl.validate_syncer_args(["--disable-sync-resources=ingresses,bogus"])
    assert err.value.reason == "InvalidSyncerArgs" and "bogus" in err.value.message
    assert tpl.syncer_extra_args({"syncer": {"extraArgs": "--a --b=c"}}) == ["--a", "--b=c"]
