"""The management.loft.sh/v1 CRDs (YAML files beside this module) and `install_crds`.

The kinds, group and field names are Loft's, so the YAML and kubectl commands of Loft's documents work
unchanged against a host cluster that has these CRDs installed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import yaml

from syncer.kube.client import ApiError, KubeClient
from syncer.kube.resources import CRDS

log = logging.getLogger(__name__)

CRD_DIR = Path(__file__).parent


def load_crds() -> list[dict[str, Any]]:
    """Every CRD document shipped with the package, in file-name order."""
    docs: list[dict[str, Any]] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _established(crd: dict[str, Any]) -> bool:
    for cond in (crd.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Established" and cond.get("status") == "True":
            return True
    return False


async def install_crds(client: KubeClient, *, wait_seconds: float = 60.0) -> list[str]:
    """Create or update every CRD and wait until each is Established. Returns the CRD names."""
    names: list[str] = []
    for doc in load_crds():
        name = doc["metadata"]["name"]
        names.append(name)
        try:
            await client.create(CRDS, doc)
            log.info("CRD created", extra={"crd": name})
        except ApiError as err:
            if not err.already_exists:
                raise
            current = await client.get(CRDS, name)
            doc = {
                **doc,
                "metadata": {**doc["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
            }
            await client.replace(CRDS, doc)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    pending = list(names)
    while pending:
        pending = [n for n in pending if not _established(await client.get(CRDS, n))]
        if pending and loop.time() > deadline:
            raise TimeoutError(f"CRDs not Established after {wait_seconds}s: {', '.join(pending)}")
        if pending:
            await asyncio.sleep(0.2)
    return names
