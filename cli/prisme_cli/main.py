"""Entry point of the ``prisme`` console script."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from prisme_core.settings import Settings, SettingsError

from prisme_cli.core import run_core
from prisme_cli.embedded import EmbeddedStoreError
from prisme_cli.logs import configure_logging
from prisme_cli.serve import CoreProcessError, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prisme", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        help="run the gRPC core and the HTTP façade (and the embedded store without a URI)",
    )
    core = commands.add_parser("core", help="run the gRPC core alone")
    core.add_argument("--metrics-port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"prisme: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(logging.DEBUG if settings.debug else logging.INFO)
    try:
        if args.command == "core":
            run_core(settings, args.metrics_port)
        else:
            serve(settings)
    except (EmbeddedStoreError, CoreProcessError, ValueError) as exc:
        print(f"prisme: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
