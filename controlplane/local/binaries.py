"""Where the locally built Kubernetes binaries live.

`hack/build-k8s.sh` builds pinned releases from Go modules into the user's cache directory; this
module finds them and fails with a message that says how to get them, instead of a bare
FileNotFoundError from deep inside a subprocess call.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

KWOK_VERSION = "v0.8.0"

COMPONENTS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "etcd",
    "kine",
    "kwok",
)


class BinariesMissing(RuntimeError):
    """A binary we need has not been built yet."""


def cache_root() -> Path:
    explicit = os.environ.get("VCLUSTER_PY_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vcluster-py"


@dataclass(frozen=True)
class Binaries:
    """Paths of every binary the local clusters start."""

    directory: Path

    @classmethod
    def locate(cls, directory: Path | None = None) -> Binaries:
        found = cls(directory or Path(os.environ.get("VCLUSTER_PY_BIN_DIR") or cache_root() / "bin"))
        missing = [name for name in COMPONENTS if not (found.directory / name).is_file()]
        if missing or not found.kwok_stages.is_dir():
            what = ", ".join(missing) or "kwok stage documents"
            raise BinariesMissing(
                f"missing in {found.directory}: {what}. Run hack/build-k8s.sh (needs Go >= 1.26 and the "
                "Go module proxy; about 20 minutes the first time, nothing after that)."
            )
        return found

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def kubectl(
        self, kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl we built (not whatever kubectl the machine has) with a kubeconfig."""
        return subprocess.run(
            [self.path("kubectl"), f"--kubeconfig={kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    @property
    def kwok_stages(self) -> Path:
        return self.directory / f"kwok-stages-{KWOK_VERSION}"

    @property
    def helm(self) -> Path:
        return self.directory / "helm"
