"""The `vcluster-py` console script: argument parsing and wiring only.

Each subcommand lives with the package that owns it (`syncer` in syncer/cli.py, ...) and registers
its own arguments; this module just dispatches. `main(argv) -> int` so tests call it directly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from syncer import cli as syncer_cli
from syncer.logs import configure_logging

from . import serve as controlplane_command
from . import up as up_command
from . import vclusters as vcluster_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vcluster-py",
        description="Virtual Kubernetes clusters inside one namespace of a host cluster.",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="json for machine-read logs"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up_command.register(commands)
    syncer_cli.register(commands)
    controlplane_command.register(commands)
    vcluster_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    configure_logging(args.log_level, args.log_format)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error instead of a traceback for expected failures
        if getattr(exc, "user_facing", False):
            logging.getLogger("vcluster-py").error("%s", exc)
            return 1
        raise
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
