"""Entry point of the ``prisme`` console script."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from prisme_core.settings import Settings, SettingsError

from prisme_cli.embedded import EmbeddedStoreError
from prisme_cli.logs import configure_logging
from prisme_cli.serve import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prisme", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        help="run the gRPC core and the HTTP façade (and the embedded store without a URI)",
    )
    parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"prisme: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(logging.DEBUG if settings.debug else logging.INFO)
    try:
        serve(settings)
    except EmbeddedStoreError as exc:
        print(f"prisme: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
