"""The ``npformer`` command line: ``npformer <command> [options]``.

A user's mistake (bad option, missing file, bad data) prints one line to
stderr and exits with code 2, never a traceback; ``NPFORMER_DEBUG=1`` shows
the traceback anyway. Commands that report figures take ``--json`` and then
print one JSON object as their last line.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

from npformer.backend import BACKEND_NAMES, DTYPES


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's default prints the usage block; keep it to one line
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(lo: int):
    """An argparse ``type``: an integer >= lo, else a one-line error naming the option."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
        return value
    return parse


def number_at_least(lo: float, strict: bool = False):
    """An argparse ``type``: a finite number >= lo (> lo when ``strict``); never nan or inf."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > lo if strict else value >= lo)):
            raise argparse.ArgumentTypeError(f"expected a finite number {'>' if strict else '>='} {lo:g}, "
                                             f"got {text!r}")
        return value
    return parse


def add_decoding_args(p, beam=4, alpha=0.6, max_len_a=1.0, max_len_b=50) -> None:
    """--beam, --alpha, --max-len-a, --max-len-b. The defaults are the paper's decoding
    (§6.1): beam 4, length penalty 0.6, outputs up to input length + 50 tokens."""
    p.add_argument("--beam", type=int_at_least(1), default=beam, help=f"beam size; 1 = greedy (default {beam})")
    p.add_argument("--alpha", type=number_at_least(0), default=alpha,
                   help=f"length penalty alpha of the beam search (default {alpha:g})")
    p.add_argument("--max-len-a", type=number_at_least(0), default=max_len_a,
                   help=f"outputs get at most A * (source tokens) + B tokens (default A = {max_len_a:g})")
    p.add_argument("--max-len-b", type=int_at_least(0), default=max_len_b, help=f"see --max-len-a (default B = {max_len_b})")


def decoding_settings(args) -> dict:
    """The keyword arguments of ``translate``/``evaluate_pairs`` from ``add_decoding_args``' options."""
    return dict(beam_size=args.beam, alpha=args.alpha, max_len_a=args.max_len_a, max_len_b=args.max_len_b)


def _add_backend_args(p, dtype_default="float32", workers=True):
    p.add_argument("--backend", default=None, choices=BACKEND_NAMES,
                   help="numpy (CPU), cupy (GPU), or cupysim (CuPy's rules simulated on the CPU, "
                        "for finding GPU faults without a GPU); default $NPFORMER_BACKEND, else numpy")
    p.add_argument("--dtype", default=dtype_default, choices=DTYPES, help=f"default {dtype_default}")
    if workers:
        p.add_argument("--workers", type=int_at_least(1), default=None,
                       help="CPU threads sharing each batch (data parallel); default: one per core "
                            "on numpy (with threadpoolctl installed), 1 on cupy")


def cmd_gradcheck(args) -> int:
    from npformer.checks import run_all_checks
    if args.dtype != "float64":
        raise ValueError(f"--dtype: gradient checks need float64, got {args.dtype}")
    results = run_all_checks(args.backend, seed=args.seed, quick=args.quick)
    rows = [r.as_dict() for r in results]
    if args.json:
        print(json.dumps(rows))
    else:
        width = max(len(r["name"]) for r in rows)
        print(f"{'name':<{width}}  {'max_rel_error':>13}  result")
        for r in rows:
            print(f"{r['name']:<{width}}  {r['max_rel_error']:>13.3e}  {'pass' if r['passed'] else 'FAIL'}")
        n_fail = sum(not r["passed"] for r in rows)
        print(f"{len(rows) - n_fail} passed, {n_fail} failed")
        for r in results:
            for problem in r.problems:
                print(f"  {r.name}: {problem}")
    return 0 if all(r["passed"] for r in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="npformer", description="The Transformer of 'Attention Is All You Need' "
                     "in explicit NumPy/CuPy math with hand-written backward passes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("gradcheck", help="check every backward pass against finite differences")
    _add_backend_args(p, "float64", workers=False)
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--quick", action="store_true", help="skip the whole-model check")
    p.add_argument("--json", action="store_true", help="print one JSON list of {name, max_rel_error, passed}")
    p.set_defaults(func=cmd_gradcheck)

    from npformer import commands
    commands.register(sub, _add_backend_args)
    return parser


# OSError covers a missing, unreadable or unwritable file or directory (and a full disk)
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if os.environ.get("NPFORMER_DEBUG"):
            raise
        print(f"npformer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"npformer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
