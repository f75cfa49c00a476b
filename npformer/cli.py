"""The ``npformer`` command line: ``npformer <command> [options]``.

A user's mistake (bad option, missing file, bad data, a missing optional
dependency: ``UserError``, ``ValueError`` or ``OSError``) prints one line to
stderr and exits with code 2, never a traceback; ``NPFORMER_DEBUG=1`` shows
the traceback anyway. Any other exception is a bug: its traceback is shown
and the exit code is 1.

Before anything imports NumPy, the command lets OpenBLAS use its AVX-512
kernels where the CPU has them (``npformer.runtime.cpu.tune_openblas``; see
there for when it does and how to opt out). Importing ``npformer`` as a
library changes no environment variable: a library user calls that function
themselves, first thing. Commands that
report figures take ``--json`` and then print one JSON object as their last
line. The commands themselves are in ``npformer/commands/``.
"""
from __future__ import annotations

import argparse
import os
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's default prints the usage block; keep it to one line
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from npformer import commands
    parser = _Parser(prog="npformer", description="The Transformer of 'Attention Is All You Need' "
                     "in explicit NumPy/CuPy math with hand-written backward passes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    commands.register(sub)
    return parser


def main(argv=None) -> int:
    from npformer.runtime.cpu import tune_openblas
    tune_openblas()  # before build_parser imports NumPy
    from npformer.errors import UserError
    # OSError covers a missing, unreadable or unwritable file or directory (and a full disk)
    user_errors = (UserError, ValueError, OSError)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except user_errors as e:
        if os.environ.get("NPFORMER_DEBUG"):
            raise
        print(f"npformer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"npformer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
