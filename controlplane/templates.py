"""Pure parts of the reconcile: template versions, parameters, rendering, values merge and hash.

Nothing here talks to a cluster, so each rule is unit-tested on its own; that includes when an instance
follows its template (`resolve_instance`).

Rendering understands the subset of Go templates Loft's documents use: `{{ .Values.a.b }}`, optionally
piped through `default "x"`, `quote` or `toYaml`/`toJson`. Anything else is an `ErrorRenderingTemplate`,
shown on the instance, never silently left in the values.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from syncer.options import OptionsError, effective_resources


class TemplateError(Exception):
    """A template problem with the TemplateResolved reason Loft uses for it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- versions ---------------------------------------------------------------------------------------

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def _parts(version: str) -> tuple[int, int, int] | None:
    m = _VERSION.match(version.strip().lstrip("v"))
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def _pattern(wanted: str) -> list[str]:
    pattern = wanted.strip().lstrip("v").split(".")
    if len(pattern) != 3 or not all(p.isdigit() or p in ("x", "X") for p in pattern):
        raise TemplateError(
            "VersionError", f"version {wanted!r} is not of the form MAJOR.MINOR.PATCH (x allowed)"
        )
    return pattern


def _matches(parts: tuple[int, int, int], pattern: list[str]) -> bool:
    return all(p in ("x", "X") or int(p) == parts[i] for i, p in enumerate(pattern))


def resolve_version(available: Iterable[str], wanted: str) -> str:
    """The highest of `available` matching `wanted` (MAJOR.MINOR.PATCH, each part a number or x/X).

    Empty `wanted` means the latest version. Raises TemplateError(VersionError) for a malformed
    pattern and TemplateError(VersionNotFound) when nothing matches.
    """
    versions = [(p, v) for v in available if (p := _parts(v)) is not None]
    if not versions:
        raise TemplateError("VersionNotFound", "the template has no versions")
    if not wanted:
        return max(versions)[1]
    pattern = _pattern(wanted)
    matches = [(parts, v) for parts, v in versions if _matches(parts, pattern)]
    if not matches:
        raise TemplateError("VersionNotFound", f"no template version matches {wanted!r}")
    return max(matches)[1]


def select_template(
    template_spec: Mapping[str, Any], wanted_version: str
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """(template definition, parameter definitions, chosen version) of a *Template's spec."""
    versions = template_spec.get("versions") or []
    if not versions:
        if wanted_version and wanted_version.lower() != "x.x.x":
            raise TemplateError(
                "VersionNotFound",
                f"the template has no versions, but version {wanted_version!r} was asked for",
            )
        return (
            copy.deepcopy(dict(template_spec.get("template") or {})),
            list(template_spec.get("parameters") or []),
            "",
        )
    chosen = resolve_version([str(v.get("version", "")) for v in versions], wanted_version)
    for v in versions:
        if str(v.get("version", "")) == chosen:
            return copy.deepcopy(dict(v.get("template") or {})), list(v.get("parameters") or []), chosen
    raise TemplateError("VersionNotFound", f"version {chosen} vanished")  # pragma: no cover


# --- parameters -------------------------------------------------------------------------------------


def _lookup(values: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    if path in values:
        return True, values[path]
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _set_path(target: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


_TRUE = {"1", "t", "true", "TRUE", "True"}
_FALSE = {"0", "f", "false", "FALSE", "False"}


def _check_one(definition: Mapping[str, Any], raw: Any, present: bool) -> Any:
    var = str(definition["variable"])
    kind = str(definition.get("type") or "string")
    default = definition.get("defaultValue")
    text = "" if raw is None else (str(raw).lower() if isinstance(raw, bool) else str(raw))
    if not present or text == "":
        if default not in (None, ""):
            text = str(default)
        elif definition.get("required"):
            raise TemplateError("ErrorSyncingParameters", f"parameter {var} is required")
        else:
            return None
    if kind == "boolean":
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise TemplateError("ErrorSyncingParameters", f"parameter {var}: {text!r} is not a boolean")
    if kind == "number":
        try:
            number = int(text)
        except ValueError:
            raise TemplateError(
                "ErrorSyncingParameters", f"parameter {var}: {text!r} is not a number"
            ) from None
        low, high = definition.get("min"), definition.get("max")
        if low is not None and number < int(low):
            raise TemplateError(
                "ErrorSyncingParameters", f"parameter {var}: {number} is below the minimum {low}"
            )
        if high is not None and number > int(high):
            raise TemplateError(
                "ErrorSyncingParameters", f"parameter {var}: {number} is above the maximum {high}"
            )
        return number
    options = [str(o) for o in definition.get("options") or []]
    if options and text in options:
        return text
    validation = definition.get("validation")
    invalidation = definition.get("invalidation")
    if validation and not re.search(str(validation), text):
        raise TemplateError(
            "ErrorSyncingParameters",
            f"parameter {var}: {text!r} does not match the validation {validation!r}",
        )
    if invalidation and re.search(str(invalidation), text):
        raise TemplateError(
            "ErrorSyncingParameters", f"parameter {var}: {text!r} matches the invalidation {invalidation!r}"
        )
    if options and not validation:
        raise TemplateError(
            "ErrorSyncingParameters", f"parameter {var}: {text!r} is not one of {', '.join(options)}"
        )
    return text


def parse_parameters(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError("ErrorSyncingParameters", f"spec.parameters is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise TemplateError("ErrorSyncingParameters", "spec.parameters must be a YAML mapping")
    return loaded


def validate_parameters(definitions: Iterable[Mapping[str, Any]], given: Mapping[str, Any]) -> dict[str, Any]:
    """Checked and defaulted parameter values, nested by their `a.b` variable paths."""
    result: dict[str, Any] = {}
    for definition in definitions:
        var = str(definition.get("variable") or "")
        if not var:
            continue
        present, raw = _lookup(given, var)
        value = _check_one(definition, raw, present)
        if value is not None:
            _set_path(result, var, value)
    return result


def parse_set_flags(
    items: Iterable[str], definitions: Iterable[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """`--set a.b=v` flags into a nested mapping; with definitions, an undeclared variable is an error."""
    declared = None if definitions is None else {str(d.get("variable")) for d in definitions}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected variable=value")
        if declared is not None and key not in declared:
            raise ValueError(
                f"--set {key}: not a parameter of the template "
                f"(declared: {', '.join(sorted(declared)) or 'none'})"
            )
        _set_path(out, key, value)
    return out


# --- rendering --------------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_STRING = re.compile(r'^"((?:[^"\\]|\\.)*)"$')


def _value_of(expr: str, values: Mapping[str, Any]) -> Any:
    expr = expr.strip()
    if expr.startswith(".Values"):
        node: Any = values
        for part in [p for p in expr[len(".Values") :].split(".") if p]:
            node = node.get(part) if isinstance(node, Mapping) else None
        return node
    m = _STRING.match(expr)
    if m:
        return json.loads(f'"{m.group(1)}"')
    if re.fullmatch(r"-?\d+", expr):
        return int(expr)
    if expr in ("true", "false"):
        return expr == "true"
    raise TemplateError("ErrorRenderingTemplate", f"unsupported template expression {expr!r}")


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _evaluate(action: str, values: Mapping[str, Any]) -> str:
    stages = [s.strip() for s in action.split("|")]
    value = _value_of(stages[0], values)
    for stage in stages[1:]:
        name, _, arg = stage.partition(" ")
        if name == "default":
            if value in (None, "", False, 0, [], {}):
                value = _value_of(arg, values)
        elif name == "quote":
            value = json.dumps(_to_text(value))
        elif name == "toYaml":
            value = yaml.safe_dump(value, default_flow_style=False).rstrip("\n")
        elif name == "toJson":
            value = json.dumps(value)
        else:
            raise TemplateError("ErrorRenderingTemplate", f"unsupported template function {name!r}")
    return _to_text(value)


def render_string(text: str, values: Mapping[str, Any]) -> str:
    return _ACTION.sub(lambda m: _evaluate(m.group(1), values), text)


def render(obj: Any, values: Mapping[str, Any]) -> Any:
    """Render every string in a template definition (labels, values, objects...) with `.Values`."""
    if isinstance(obj, str):
        return render_string(obj, values)
    if isinstance(obj, list):
        return [render(v, values) for v in obj]
    if isinstance(obj, dict):
        return {k: render(v, values) for k, v in obj.items()}
    return obj


# --- values -----------------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge: maps merge recursively, anything else (lists included) is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_values(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win: chart defaults < cluster defaults < rendered template values."""
    out: dict[str, Any] = {}
    for layer in layers:
        out = deep_merge(out, layer)
    return out


def parse_values(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(
            "ErrorRenderingTemplate", f"helmRelease.values is not valid YAML: {exc}"
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise TemplateError("ErrorRenderingTemplate", "helmRelease.values must be a YAML mapping")
    return loaded


def values_hash(values: Mapping[str, Any]) -> str:
    """Stable across key order: the deploy hash stored in status.deployHash."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def syncer_extra_args(values: Mapping[str, Any]) -> list[str]:
    """`syncer.extraArgs` as a list of strings (a single string is split like a shell would)."""
    syncer = values.get("syncer") or {}
    raw = syncer.get("extraArgs") if isinstance(syncer, Mapping) else None
    if raw is None:
        return []
    if isinstance(raw, str):
        return shlex.split(raw)
    if not isinstance(raw, list):
        raise TemplateError("InvalidSyncerArgs", "syncer.extraArgs must be a list of strings")
    return [str(a) for a in raw]


def validate_syncer_args(args: Iterable[str]) -> frozenset[str]:
    """Check `--disable-sync-resources` / `--sync` in the syncer's extra args; returns the synced set.

    An unknown resource name raises TemplateError(InvalidSyncerArgs) naming it and the valid names.
    """
    disable: list[str] = []
    sync: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        for flag, bucket in (("--disable-sync-resources", disable), ("--sync", sync)):
            if arg == flag and i + 1 < len(items):
                bucket.append(items[i + 1])
                i += 1
            elif arg.startswith(flag + "="):
                bucket.append(arg[len(flag) + 1 :])
        i += 1
    try:
        return effective_resources(disable, sync)
    except OptionsError as exc:
        raise TemplateError("InvalidSyncerArgs", f"syncer.extraArgs: {exc}") from None


# --- following the template -------------------------------------------------------------------------
#
# Loft's documents: "SyncOnce tells the controller to sync the instance once with the template. This is
# useful if you want to sync an instance after a template was changed. To automatically sync an instance
# with a template, use 'x.x.x' as version instead." So an instance keeps what it was synced with; the
# live template reaches it again only through syncOnce, or through a newer version matching an x pattern.

TEMPLATE_CHANGES_AVAILABLE = "TemplateChangesAvailable"


@dataclass(frozen=True)
class SyncedTemplate:
    """The template an instance was last synced with: kept in its status (`status.syncedTemplate`).

    It holds the definition before rendering, with its parameter definitions, so that a change of the
    instance's own `spec.parameters` still renders again at once without reading the live template.
    """

    name: str
    version: str
    template: dict[str, Any]
    parameters: list[dict[str, Any]]

    def to_status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "template": copy.deepcopy(self.template),
            "parameters": copy.deepcopy(self.parameters),
        }

    @classmethod
    def from_status(cls, raw: Any) -> SyncedTemplate | None:
        if not isinstance(raw, Mapping) or not raw.get("name"):
            return None
        return cls(
            name=str(raw["name"]),
            version=str(raw.get("version") or ""),
            template=dict(raw.get("template") or {}),
            parameters=[dict(p) for p in raw.get("parameters") or []],
        )

    def describe(self) -> str:
        return f"{self.name} version {self.version}" if self.version else self.name


@dataclass(frozen=True)
class Resolution:
    """What an instance renders from in this reconcile, and what its TemplateSynced condition says.

    `synced` is what `status.syncedTemplate` must hold (None for an inline `spec.template`, which is the
    instance's own spec and so always followed). `newly_synced` means it was taken from the live template
    just now: the controller records it before resetting `spec.templateRef.syncOnce`. A non-empty
    `reason` makes TemplateSynced False: the live template has changes not applied, or it could not be
    read and the recorded one is used.
    """

    rendered: dict[str, Any]
    synced: SyncedTemplate | None
    newly_synced: bool = False
    reason: str = ""
    message: str = ""


def follows_versions(wanted: str) -> bool:
    """An x in templateRef.version (`x.x.x`, `1.x.x`) asks for newer matching versions automatically."""
    return "x" in wanted.lower()


def _newer(candidate: str, than: str) -> bool:
    new, old = _parts(candidate), _parts(than)
    return new is not None and (old is None or new > old)


def _still_wanted(recorded: SyncedTemplate, name: str, wanted: str) -> bool:
    """Whether the recorded template still answers templateRef (same name, version within the pattern).

    The user changing templateRef.name or .version asks for another template: that is a sync, not a
    template edit to hold back.
    """
    if recorded.name != name:
        return False
    if not wanted:
        return True
    try:
        pattern = _pattern(wanted)
    except TemplateError:
        return False
    if not recorded.version:  # a template without versions answers only x.x.x (as in select_template)
        return all(p in ("x", "X") for p in pattern)
    parts = _parts(recorded.version)
    return parts is not None and _matches(parts, pattern)


def _render_with(
    definition: Mapping[str, Any],
    definitions: list[dict[str, Any]],
    given: Mapping[str, Any],
    builtins: Mapping[str, Any],
) -> dict[str, Any]:
    params = validate_parameters(definitions, given) if definitions else dict(given)
    rendered: dict[str, Any] = render(copy.deepcopy(dict(definition)), {**params, "loft": dict(builtins)})
    return rendered


def resolve_instance(
    spec: Mapping[str, Any],
    recorded: Any,
    live_template_spec: Mapping[str, Any] | None,
    builtins: Mapping[str, Any],
    template_kind: str,
) -> Resolution:
    """The template an instance renders from: the recorded one unless a sync is due.

    - an inline `spec.template` is rendered as it is now (it is the instance's own spec);
    - nothing usable recorded (first reconcile, or templateRef now names another template or a version
      outside the recorded one): sync from the live template; a problem raises TemplateError and so
      fails the instance, as there is nothing to fall back on;
    - `syncOnce`, or an x version with a newer matching version in the live template: sync again; if
      that fails the recorded template is kept and TemplateSynced says why;
    - otherwise the recorded template; TemplateSynced is False (TemplateChangesAvailable) when a sync
      would now give something else.

    `recorded` is `status.syncedTemplate` as read; `live_template_spec` is None when the template is
    missing. Errors in the instance's own parameters raise, whatever template they are checked against.
    """
    ref = spec.get("templateRef") or {}
    inline = spec.get("template")
    given = parse_parameters(spec.get("parameters"))
    name = str(ref.get("name") or "")
    if name and inline:
        raise TemplateError("Forbidden", "spec.template and spec.templateRef are mutually exclusive")
    if not name:
        return Resolution(_render_with(dict(inline or {}), [], given, builtins), None)

    wanted = str(ref.get("version") or "")
    kept = SyncedTemplate.from_status(recorded)
    if kept is not None and not _still_wanted(kept, name, wanted):
        kept = None
    live: SyncedTemplate | None = None
    problem: TemplateError | None = None
    if live_template_spec is None:
        problem = TemplateError("TemplateNotFound", f"{template_kind} {name!r} not found")
    else:
        try:
            definition, definitions, version = select_template(live_template_spec, wanted)
            live = SyncedTemplate(name, version, definition, definitions)
        except TemplateError as err:
            problem = err

    if kept is None:
        if live is None:
            assert problem is not None
            raise problem
        return Resolution(_render_with(live.template, live.parameters, given, builtins), live, True)

    sync = bool(ref.get("syncOnce")) or (
        follows_versions(wanted) and live is not None and _newer(live.version, kept.version)
    )
    if sync and live is not None:
        try:
            return Resolution(_render_with(live.template, live.parameters, given, builtins), live, True)
        except TemplateError as err:
            problem = err
    rendered = _render_with(kept.template, kept.parameters, given, builtins)
    if problem is not None:
        action = "syncing" if sync else "reading"
        return Resolution(
            rendered,
            kept,
            reason=problem.reason,
            message=f"{action} {template_kind} {name!r}: {problem.message}; still using {kept.describe()}",
        )
    if live is not None and live != kept:
        newer = f" (now version {live.version})" if live.version != kept.version else ""
        return Resolution(
            rendered,
            kept,
            reason=TEMPLATE_CHANGES_AVAILABLE,
            message=(
                f"{template_kind} {name!r} changed since the instance was synced with "
                f"{kept.describe()}{newer}; set spec.templateRef.syncOnce: true to sync again"
            ),
        )
    return Resolution(rendered, kept)
