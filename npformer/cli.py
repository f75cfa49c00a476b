"""The ``npformer`` command line: ``npformer <command> [options]``.

How a command ends:

- ``UserError`` (npformer/errors.py), a mistake or missing piece on the user's
  side: one line on stderr, exit code 2, never a traceback.
- ``OSError`` on a path the user gave (``--data``, ``--out``, ``--checkpoint``,
  a RUN_DIR, ...: ``PATH_OPTIONS``), on a file inside one (RUN_DIR/last.npz)
  or on a directory on the way to one: the same, one line naming the file.
- Anything else is a bug, a ``ValueError`` from an op included: ``main`` lets
  it propagate, so Python prints its traceback and the process exits with 1
  (and a caller of ``main``, a test or a debugger, gets the exception itself).
- Ctrl-C: one line, exit code 130; stdout closed by its reader
  (``npformer info | head -1``): silence, exit code 141, as for SIGPIPE.
  ``NPFORMER_DEBUG=1`` shows the traceback of a user's mistake too.

Why OSError is judged by its file name here rather than converted to
``UserError`` wherever a file is opened: the readers of the user's files do
convert (a corpus, a checkpoint: their ``UserError`` says what was expected),
but the writes happen deep inside the work, e.g. a checkpoint every
``--save-every`` steps of the training loop, far from the option that named the
directory. One test here covers every write under the user's paths (a full disk
at step 5,000 says ``runs/x/last.npz: cannot write the checkpoint (No space
left on device)``) without
teaching internals the options' names, and an OSError on a file the program
chose itself, which only a bug opens wrongly, still shows its traceback. The
writers make that test possible: ``checkpoint.save`` and the plots name the
file they failed to write in the OSError they raise. A ``ValueError`` is never
taken for the user's: where a check of a user's value lives below the commands
(a model config, a synthetic task), the boundary that passes the value on
(``run.start_run``, the command) turns its ValueError into a ``UserError``.

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

# The options (argparse dests) whose values are paths: an OSError on one of them,
# inside one or on the way to one is the user's (see above). A new path option is
# named here.
PATH_OPTIONS = ("data", "out", "checkpoint", "checkpoints", "run_dir", "run_dirs", "dir")


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


def user_paths(args) -> list[str]:
    """The absolute paths given in ``args``' ``PATH_OPTIONS``."""
    paths = []
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        for p in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(p, (str, os.PathLike)) and os.fspath(p):
                paths.append(os.path.abspath(os.fspath(p)))
    return paths


def on_user_path(e: OSError, args) -> bool:
    """Whether ``e`` names a path the user gave, a file inside one, or a directory
    on the way to one (``os.makedirs`` of ``--out a/b`` fails on ``a``)."""
    mine = user_paths(args)
    for name in (e.filename, e.filename2):
        if not isinstance(name, (str, os.PathLike)):
            continue
        f = os.path.abspath(os.fspath(name))
        if any(f == p or p.startswith(f.rstrip(os.sep) + os.sep) or f.startswith(p.rstrip(os.sep) + os.sep)
               for p in mine):
            return True
    return False


def describe_os_error(e: OSError) -> str:
    """``path: reason`` (``path -> other: reason`` for a rename)."""
    where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
    return f"{where}: {e.strerror or e}"


def main(argv=None) -> int:
    from npformer.runtime.cpu import tune_openblas
    tune_openblas()  # before build_parser imports NumPy
    from npformer.errors import UserError
    from npformer.commands.options import check_environment
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(os.environ.get("NPFORMER_DEBUG"))
    try:
        check_environment(args)
        return int(args.func(args) or 0)
    except UserError as e:  # AgreedError too: the refusal all ranks agreed on at start-up
        if debug:
            raise
        print(f"npformer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout's reader left (npformer ... | head): nothing to say, nobody to say it to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141  # as a shell reports a process ended by SIGPIPE
    except OSError as e:
        if debug or not on_user_path(e, args):
            raise  # a file the program chose: a bug
        print(f"npformer {args.command}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"npformer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
