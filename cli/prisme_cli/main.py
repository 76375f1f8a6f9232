"""Entry point of the ``prisme`` console script."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from prisme_core.settings import Settings, SettingsError

from prisme_cli.children import ChildError, die_with_parent
from prisme_cli.core import CorePlace, run_core
from prisme_cli.embedded import EmbeddedStoreError
from prisme_cli.facade import run_facade
from prisme_cli.logs import configure_logging
from prisme_cli.serve import serve


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prisme", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        help="run the gRPC cores and the HTTP façades (and the embedded store without a URI)",
    )
    core = commands.add_parser("core", help="run one gRPC core alone")
    # Set by `prisme serve` for its children: not for people.
    facade = commands.add_parser("facade")
    for child in (core, facade):
        child.add_argument("--metrics-port", type=int, default=None, help=argparse.SUPPRESS)
        child.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)
        child.add_argument("--name", default=None, help=argparse.SUPPRESS)
    core.add_argument("--private", default=None, help=argparse.SUPPRESS)
    core.add_argument("--writes", type=Path, default=None, help=argparse.SUPPRESS)
    core.add_argument("--slot", type=int, default=0, help=argparse.SUPPRESS)
    core.add_argument("--slots", type=int, default=1, help=argparse.SUPPRESS)
    facade.add_argument("--core", action="append", default=[], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if getattr(args, "parent", None) is not None:
        die_with_parent(args.parent)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"prisme: configuration error: {exc}", file=sys.stderr)
        return 2
    name = getattr(args, "name", None) or ("facade-0" if args.command == "serve" else None)
    configure_logging(logging.DEBUG if settings.debug else logging.INFO, name)
    try:
        if args.command == "core":
            place = None
            if args.private is not None and args.writes is not None:
                place = CorePlace(args.private, args.writes, args.slot, args.slots)
            run_core(settings, args.metrics_port, place)
        elif args.command == "facade":
            run_facade(settings, args.core, args.metrics_port)
        else:
            serve(settings)
    except (EmbeddedStoreError, ChildError, ValueError) as exc:
        print(f"prisme: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
