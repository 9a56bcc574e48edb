"""The syncer image (images/Dockerfile), tested without a Docker engine.

What can be checked here is checked: the Dockerfile's structure (multi-stage on python:3.11-slim, a
numeric non-root USER that the chart runs k3s as too, the `vcluster-py` entrypoint, nothing but the
interpreter and the virtualenv in the final stage), that its ignore file sends every file it copies
and nothing else, and — marked e2e because it takes a few seconds — that the wheel builds from
exactly what the Dockerfile copies, installs into a fresh virtualenv, and its `vcluster-py syncer
--help` works there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "images" / "Dockerfile"
IGNORE_FILE = REPO / "images" / "Dockerfile.dockerignore"

# Anything that compiles or fetches build dependencies: never in the final stage.
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev|libc6?-dev|musl-dev|"
    r"apt-get|apt|apk|yum|dnf|pip\s+wheel|hatch|setuptools-scm)\b"
)


@dataclass
class Stage:
    base: str
    alias: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions with line continuations joined and comments dropped; ARGs before FROM resolved."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a line continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], parts[0])
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, alias))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(global_args, stages)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


def copy_sources(stage: Stage) -> list[str]:
    """Sources of the stage's COPY instructions from the build context (not --from=...)."""
    sources: list[str] = []
    for args in stage.all("COPY"):
        words = args.split()
        if any(w.startswith("--from=") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        sources += words[:-1]
    return sources


def test_multi_stage_on_slim_python_311(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    build, final = dockerfile.stages[0], dockerfile.stages[-1]
    assert build.alias == "build"
    assert final.base == build.base == "python:3.11-slim"


def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    final = dockerfile.stages[-1]
    users = final.all("USER")
    assert users, "the final stage sets no USER (it would run as root)"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]!r} must be a numeric non-root uid"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # USER comes after every RUN: nothing in the final stage runs as root after it.
    keywords = [kw for kw, _ in final.instructions]
    assert keywords.index("USER") > max((i for i, kw in enumerate(keywords) if kw == "RUN"), default=-1)


def test_chart_runs_both_containers_as_the_image_user(dockerfile: Dockerfile) -> None:
    """The syncer reads files k3s writes with mode 0600: the chart's pod user must be the image's."""
    uid, _, gid = dockerfile.stages[-1].all("USER")[-1].partition(":")
    values = yaml.safe_load((REPO / "charts" / "vcluster" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid or uid)
    assert values["podSecurityContext"]["runAsNonRoot"] is True


def test_entrypoint_is_the_console_script(dockerfile: Dockerfile) -> None:
    final = dockerfile.stages[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["vcluster-py"]  # exec form: signals reach the syncer
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "vcluster-py" in scripts
    env = " ".join(final.all("ENV"))
    venv = re.search(r"PATH=(\S+)/bin:\$PATH", env)
    assert venv, "the final stage must put the virtualenv's bin/ first on PATH"
    assert any(f"--from=build {venv.group(1)} {venv.group(1)}" in c for c in final.all("COPY"))


def test_final_stage_has_no_build_tools(dockerfile: Dockerfile) -> None:
    final = dockerfile.stages[-1]
    for keyword, args in final.instructions:
        if keyword == "RUN":
            # The only RUN removes pip/setuptools/wheel from the base image.
            assert "pip uninstall" in args, args
            assert not BUILD_TOOLS.search(args.replace("pip uninstall", "")), args
        if keyword in ("COPY", "ADD"):
            assert "--from=build" in args, f"the final stage copies only the built virtualenv: {args}"
    assert "uninstall --yes pip" in " ".join(dockerfile.stages[0].all("RUN")), (
        "the virtualenv copied to the final stage must not carry pip"
    )


def test_build_stage_installs_binary_wheels_only(dockerfile: Dockerfile) -> None:
    run = " ".join(dockerfile.stages[0].all("RUN"))
    assert "pip wheel --no-deps" in run
    assert "--only-binary=:all:" in run  # no dependency is ever compiled, so no compiler is needed


def test_build_stage_copies_every_package_of_the_wheel(dockerfile: Dockerfile) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    sources = copy_sources(dockerfile.stages[0])
    for needed in ["pyproject.toml", pyproject["project"]["readme"], *packages]:
        assert needed in sources, f"images/Dockerfile does not COPY {needed}"
        assert (REPO / needed).exists()


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over context-relative paths."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern that matches a directory matches
    everything under it."""
    parents = [path]
    while "/" in parents[-1]:
        parents.append(parents[-1].rsplit("/", 1)[0])
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().strip("/")
        regex = _pattern_regex(pattern)
        if any(regex.fullmatch(p) for p in parents):
            ignored = not negate
    return ignored


def ignore_patterns() -> list[str]:
    lines = IGNORE_FILE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_ignore_file_is_the_one_buildkit_reads_for_this_dockerfile() -> None:
    # BuildKit looks for <Dockerfile name>.dockerignore beside the Dockerfile before the context's.
    assert IGNORE_FILE.parent == DOCKERFILE.parent
    assert IGNORE_FILE.name == DOCKERFILE.name + ".dockerignore"


def test_ignore_file_sends_what_the_dockerfile_copies_and_nothing_else(dockerfile: Dockerfile) -> None:
    patterns = ignore_patterns()
    for source in copy_sources(dockerfile.stages[0]):
        root = REPO / source
        files = [root] if root.is_file() else [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
        assert files, source
        for path in files:
            rel = path.relative_to(REPO).as_posix()
            assert not dockerignored(rel, patterns), f"{rel} is copied by the Dockerfile but ignored"
    for rel in [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/conftest.py",
        "hack/up",
        "charts/vcluster/Chart.yaml",
        "bench/x.py",
        "syncer/__pycache__/app.cpython-311.pyc",
        "images/Dockerfile",
    ]:
        assert dockerignored(rel, patterns), f"{rel} would be sent to the Docker daemon"


def test_dockerignore_matcher() -> None:
    assert dockerignored("a/b/c.pyc", ["**/*.pyc"])
    assert dockerignored("x/y", ["*"])
    assert not dockerignored("keep/me.py", ["*", "!keep/"])
    assert dockerignored("keep/__pycache__/m.pyc", ["*", "!keep/", "**/__pycache__"])


# ---------------------------------------------------------------------------------------------------
# The wheel, built from exactly what the Dockerfile copies, in a fresh virtualenv.


def _run(*argv: str | Path, cwd: Path, timeout: float = 240) -> str:
    """Run with `cwd` outside the checkout (`python -c` puts the cwd first on sys.path)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"},
    )
    assert proc.returncode == 0, f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


@pytest.mark.e2e
def test_wheel_installs_into_a_fresh_venv_and_syncer_help_works(
    dockerfile: Dockerfile, tmp_path: Path
) -> None:
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip(
            "hatchling (the build backend) is not installed in this environment; building offline "
            "needs it: add it to the [test] extra"
        )
    # 1. The build context as the Dockerfile's COPY lines lay it out, nothing more.
    src = tmp_path / "src"
    src.mkdir()
    for source in copy_sources(dockerfile.stages[0]):
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, src / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / source)
    # 2. Stage 1's `pip wheel --no-deps` (offline: the backend comes from this environment).
    wheels = tmp_path / "wheels"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        src,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("vcluster_py-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {"syncer/__init__.py", "proxy/__init__.py", "controlplane/cli.py", "syncer/host_rbac.py"} <= set(
        names
    )
    assert not [n for n in names if n.startswith("tests/")]
    assert "vcluster-py = controlplane.cli:main" in entry_points
    # 3. A fresh virtualenv with the wheel, then pip removed from it as in the Dockerfile. The
    # dependencies (PyPI binary wheels in the image) come from this environment's site-packages,
    # added as a plain path: no network here, and this environment's editable install of
    # vcluster-py is not on that path (its .pth files are not processed), so only the wheel is.
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    _run(python, "-m", "pip", "uninstall", "--yes", "pip", cwd=tmp_path)
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
    )
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    # 4. The image's entrypoint.
    where = _run(python, "-c", "import syncer, proxy, controlplane as c; print(c.__file__)", cwd=tmp_path)
    assert where.strip().startswith(str(site)), f"imported {where.strip()}, not the wheel in {site}"
    assert not (venv / "bin" / "pip").exists()
    help_text = _run(venv / "bin" / "vcluster-py", "syncer", "--help", cwd=tmp_path)
    for flag in [
        "--name",
        "--target-namespace",
        "--service-name",
        "--virtual-kubeconfig",
        "--server-ca-cert",
        "--server-ca-key",
        "--client-ca-cert",
        "--proxy-port",
        "--health-address",
        "--out-kube-config-secret",
        "--out-kube-config-server",
        "--tls-san",
        "--disable-sync-resources",
        "--sync",
    ]:
        assert re.search(rf"(^|\s|\[){re.escape(flag)}[\s=\],]", help_text), (
            f"{flag} missing from syncer --help"
        )
    top = _run(venv / "bin" / "vcluster-py", "--help", cwd=tmp_path)
    assert "--log-level" in top and "--log-format" in top and "syncer" in top
