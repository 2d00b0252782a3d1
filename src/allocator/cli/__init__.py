"""The ``allocator`` command line (argparse; :func:`main` is testable without a subprocess).

Exit status: 0 on success (also when orders are backordered or rejected), 2 on bad input with the
error on stderr and no result files written, 1 on an internal failure.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from allocator import __version__
from allocator.cli import _allocate, _demo, _explain, _generate, _simulate, _validate
from allocator.errors import AllocatorError, InputError

__all__ = ["console_main", "main"]

#: Each command module has ``register(subparsers)`` which adds its parser and sets ``func``.
COMMANDS = (_demo, _generate, _validate, _allocate, _explain, _simulate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allocator",
        description="Decide where every order is fulfilled from.",
    )
    parser.add_argument("--version", action="version", version=f"allocator {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            code: int = args.func(args)
        return code
    except InputError as exc:
        print(f"allocator: error: {exc}", file=sys.stderr)
        return 2
    except AllocatorError as exc:
        print(f"allocator: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except KeyboardInterrupt:
        print("allocator: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal failure: say so, exit 1
        logging.getLogger("allocator").debug("internal failure", exc_info=True)
        print(f"allocator: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    print(f"allocator: warning: {message}", file=sys.stderr)


def console_main() -> None:  # pragma: no cover - the installed script
    sys.exit(main())
