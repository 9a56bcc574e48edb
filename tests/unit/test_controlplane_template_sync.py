"""When an instance follows its template (tpl.resolve_instance): once, then on syncOnce or an x version.

Each case is a reconcile: the instance's spec, what its status recorded, and the live template's spec.
"""

from __future__ import annotations

from typing import Any

import pytest

from controlplane import templates as tpl
from controlplane.objects import set_condition

BUILTINS = {"project": "p", "name": "inst"}
KIND = "SpaceTemplate"


def version(v: str, label: str, **extra: Any) -> dict[str, Any]:
    return {
        "version": v,
        "parameters": [{"variable": "team", "required": True}],
        "template": {"metadata": {"labels": {"flavour": label, "team": "{{ .Values.team }}"}}, **extra},
    }


def template(*versions: dict[str, Any]) -> dict[str, Any]:
    return {"versions": list(versions)}


def ref_spec(wanted: str = "", sync_once: bool = False, name: str = "t", team: str = "a") -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "version": wanted}
    if sync_once:
        ref["syncOnce"] = True
    return {"templateRef": ref, "parameters": f"team: {team}"}


def resolve(spec: dict[str, Any], recorded: Any, live: dict[str, Any] | None) -> tpl.Resolution:
    return tpl.resolve_instance(spec, recorded, live, BUILTINS, KIND)


def labels(res: tpl.Resolution) -> dict[str, str]:
    return dict(res.rendered["metadata"]["labels"])


def synced(spec: dict[str, Any], live: dict[str, Any]) -> Any:
    """The status.syncedTemplate a first reconcile records (through its dict form, as status stores it)."""
    first = resolve(spec, None, live)
    assert first.newly_synced and first.synced is not None
    return first.synced.to_status()


def test_first_reconcile_syncs_and_records_the_definition_before_rendering() -> None:
    live = template(version("1.0.0", "one"))
    res = resolve(ref_spec(), None, live)
    assert res.newly_synced and not res.reason
    assert labels(res) == {"flavour": "one", "team": "a"}
    assert res.synced == tpl.SyncedTemplate(
        "t", "1.0.0", live["versions"][0]["template"], live["versions"][0]["parameters"]
    )
    # the record keeps the template unrendered, so parameters can be rendered again later
    assert res.synced.to_status()["template"]["metadata"]["labels"]["team"] == "{{ .Values.team }}"
    assert tpl.SyncedTemplate.from_status(res.synced.to_status()) == res.synced


def test_template_edit_is_held_back_and_reported() -> None:
    recorded = synced(ref_spec(), template(version("1.0.0", "one")))
    edited = template(version("1.0.0", "edited"))
    res = resolve(ref_spec(), recorded, edited)
    assert not res.newly_synced
    assert labels(res)["flavour"] == "one"
    assert res.reason == tpl.TEMPLATE_CHANGES_AVAILABLE
    assert "syncOnce" in res.message
    # nothing changed: synced, no reason
    same = resolve(ref_spec(), recorded, template(version("1.0.0", "one")))
    assert not same.newly_synced and not same.reason and labels(same)["flavour"] == "one"


def test_sync_once_takes_the_live_template() -> None:
    recorded = synced(ref_spec(), template(version("1.0.0", "one")))
    res = resolve(ref_spec(sync_once=True), recorded, template(version("1.0.0", "edited")))
    assert res.newly_synced and not res.reason
    assert labels(res)["flavour"] == "edited"
    assert res.synced is not None and res.synced.template["metadata"]["labels"]["flavour"] == "edited"


def test_own_parameters_render_again_from_the_record_not_the_live_template() -> None:
    recorded = synced(ref_spec(team="a"), template(version("1.0.0", "one")))
    res = resolve(ref_spec(team="b"), recorded, template(version("1.0.0", "edited")))
    assert labels(res) == {"flavour": "one", "team": "b"}
    assert not res.newly_synced
    # ... and they are checked against the recorded parameter definitions
    with pytest.raises(tpl.TemplateError) as err:
        resolve({"templateRef": {"name": "t"}}, recorded, template(version("1.0.0", "one")))
    assert err.value.reason == "ErrorSyncingParameters"


@pytest.mark.parametrize("wanted", ["x.x.x", "1.x.x", "1.0.X"])
def test_x_version_follows_a_newer_matching_version(wanted: str) -> None:
    recorded = synced(ref_spec(wanted), template(version("1.0.0", "one")))
    newer = template(version("1.0.0", "one"), version("1.0.1", "newer"))
    res = resolve(ref_spec(wanted), recorded, newer)
    assert res.newly_synced and labels(res)["flavour"] == "newer"
    assert res.synced is not None and res.synced.version == "1.0.1"


def test_x_version_does_not_follow_an_edit_of_the_same_version_or_a_version_outside_the_pattern() -> None:
    recorded = synced(ref_spec("1.x.x"), template(version("1.0.0", "one")))
    edited = resolve(ref_spec("1.x.x"), recorded, template(version("1.0.0", "edited")))
    assert not edited.newly_synced and labels(edited)["flavour"] == "one"
    assert edited.reason == tpl.TEMPLATE_CHANGES_AVAILABLE
    major = resolve(ref_spec("1.x.x"), recorded, template(version("1.0.0", "one"), version("2.0.0", "two")))
    assert not major.newly_synced and not major.reason and labels(major)["flavour"] == "one"
    # an older version is no reason to move either (the synced one was deleted, say)
    recorded_new = synced(ref_spec("x.x.x"), template(version("1.0.0", "one"), version("1.1.0", "eleven")))
    older = resolve(ref_spec("x.x.x"), recorded_new, template(version("1.0.0", "one")))
    assert not older.newly_synced and labels(older)["flavour"] == "eleven"
    assert older.reason == tpl.TEMPLATE_CHANGES_AVAILABLE


def test_empty_version_is_synced_once_with_the_latest_not_followed() -> None:
    recorded = synced(ref_spec(""), template(version("1.0.0", "one")))
    res = resolve(ref_spec(""), recorded, template(version("1.0.0", "one"), version("1.1.0", "eleven")))
    assert not res.newly_synced and labels(res)["flavour"] == "one"
    assert res.reason == tpl.TEMPLATE_CHANGES_AVAILABLE and "1.1.0" in res.message


def test_changing_the_reference_is_a_sync() -> None:
    live = template(version("1.0.0", "one"), version("1.1.0", "eleven"))
    recorded = synced(ref_spec("1.0.0"), live)
    pinned = resolve(ref_spec("1.1.0"), recorded, live)
    assert pinned.newly_synced and labels(pinned)["flavour"] == "eleven"
    other = resolve(ref_spec("1.0.0", name="other"), recorded, template(version("1.0.0", "other")))
    assert other.newly_synced and labels(other)["flavour"] == "other"


def test_unversioned_template_with_x_version_is_held_back_too() -> None:
    spec_v1 = {"template": {"metadata": {"labels": {"flavour": "one"}}}}
    recorded = synced(ref_spec("x.x.x"), spec_v1)
    assert tpl.SyncedTemplate.from_status(recorded) == tpl.SyncedTemplate("t", "", spec_v1["template"], [])
    res = resolve(ref_spec("x.x.x"), recorded, {"template": {"metadata": {"labels": {"flavour": "two"}}}})
    assert not res.newly_synced and labels(res) == {"flavour": "one"}
    assert res.reason == tpl.TEMPLATE_CHANGES_AVAILABLE
    # versions appearing later are newer than none
    gained = resolve(ref_spec("x.x.x"), recorded, template(version("1.0.0", "versioned")))
    assert gained.newly_synced and labels(gained)["flavour"] == "versioned"


def test_missing_template_keeps_the_record_but_fails_a_first_sync() -> None:
    recorded = synced(ref_spec(), template(version("1.0.0", "one")))
    res = resolve(ref_spec(), recorded, None)
    assert labels(res)["flavour"] == "one" and not res.newly_synced
    assert res.reason == "TemplateNotFound" and "still using t version 1.0.0" in res.message
    with pytest.raises(tpl.TemplateError) as err:
        resolve(ref_spec(), None, None)
    assert err.value.reason == "TemplateNotFound"
    with pytest.raises(tpl.TemplateError) as err:
        resolve(ref_spec("9.x.x"), recorded, template(version("1.0.0", "one")))
    assert err.value.reason == "VersionNotFound"


def test_failed_sync_keeps_the_record_and_says_why() -> None:
    recorded = synced(ref_spec(), template(version("1.0.0", "one")))
    needs_more = version("1.0.0", "edited")
    needs_more["parameters"].append({"variable": "size", "required": True})
    res = resolve(ref_spec(sync_once=True), recorded, template(needs_more))
    assert not res.newly_synced and labels(res)["flavour"] == "one"
    assert res.reason == "ErrorSyncingParameters" and "size" in res.message
    assert res.message.startswith("syncing SpaceTemplate 't'")


def test_inline_template_is_the_instances_own_spec() -> None:
    spec = {"template": {"metadata": {"labels": {"x": "{{ .Values.loft.project }}"}}}}
    res = resolve(spec, None, None)
    assert res.synced is None and not res.newly_synced and not res.reason
    assert labels(res) == {"x": "p"}
    with pytest.raises(tpl.TemplateError) as err:
        resolve({**spec, "templateRef": {"name": "t"}}, None, None)
    assert err.value.reason == "Forbidden"


def test_changes_available_is_information_not_an_error() -> None:
    conds = set_condition([], "TemplateSynced", False, tpl.TEMPLATE_CHANGES_AVAILABLE, "m", severity="Info")
    assert conds[0]["severity"] == "Info" and conds[0]["reason"] == tpl.TEMPLATE_CHANGES_AVAILABLE
    assert set_condition([], "TemplateSynced", False, "TemplateNotFound", "m")[0]["severity"] == "Error"


def test_set_condition_keeps_the_order() -> None:
    """Status is written more than once per reconcile: a reordered list would be a write every time."""
    conds = set_condition(set_condition([], "A", True), "B", True)
    again = set_condition(set_condition(conds, "A", True), "B", True)
    assert [c["type"] for c in again] == ["A", "B"] and again == conds
    flipped = set_condition(conds, "A", False, "Broken", "m")
    assert [c["type"] for c in flipped] == ["A", "B"] and flipped[0]["reason"] == "Broken"
