"""What the commands share: option types, the backend, decoding and recipe
options, the optional extras a command needs, and ``users_values``, where a
check of the user's values below the commands becomes a ``UserError``.

Every command module defines ``add_parser(sub)`` (adds its parser and sets
``func``) and imports what it shares with the others from here, never from a
sibling command.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from contextlib import contextmanager

from npformer.backend import BACKEND_NAMES, DTYPES
from npformer.errors import UserError
from npformer.run import CORPUS_DEFAULTS

# The extra of setup.cfg that installs each optional module.
# platforms.PLATFORMS, written out: building a parser imports no grader (tests/commands/test_exercise.py
# holds the two equal)
REPORT_PLATFORMS = ("gradescope", "prairielearn", "junit")
EXTRAS = {"sacrebleu": "eval", "threadpoolctl": "train", "tqdm": "train", "matplotlib": "plot"}


def require(module: str, purpose: str) -> None:
    """Refuse to start, naming the extra to install, when ``module`` cannot be imported.

    Commands call it before their work begins, so that a missing optional
    dependency costs seconds, not a training run."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(f"{purpose} needs {module}, which is not installed: "
                           f"pip install 'npformer[{EXTRAS[module]}]'") from None


@contextmanager
def users_values():
    """``with users_values(): cfg = preset(args.preset, ...)``: a ``ValueError`` raised
    inside is a check of values the user chose (a model config, say), so it leaves as
    a ``UserError`` (exit 2, one line). Keep the block to building from the options:
    a ValueError of the work done with them is a bug and must keep its traceback."""
    try:
        yield
    except ValueError as e:
        raise UserError(str(e)) from e


def preset_name(text: str) -> str:
    """An argparse ``type``: the name of a model preset (npformer/model/config.py)."""
    from npformer.model.config import PRESETS
    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; expected one of {', '.join(PRESETS)}")
    return text


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


def add_backend_args(p, dtype_default="float32", workers=True) -> None:
    """--backend, --dtype and (unless ``workers`` is False) --workers."""
    p.add_argument("--backend", default=None, choices=BACKEND_NAMES,
                   help="numpy (CPU), cupy (GPU), or cupysim (CuPy's rules simulated on the CPU, "
                        "for finding GPU faults without a GPU); default $NPFORMER_BACKEND, else numpy")
    p.add_argument("--dtype", default=dtype_default, choices=DTYPES, help=f"default {dtype_default}")
    if workers:
        p.add_argument("--workers", type=int_at_least(1), default=None,
                       help="CPU threads sharing each batch (data parallel); default: one per core "
                            "on numpy (with threadpoolctl installed), 1 on cupy")


def check_environment(args) -> None:
    """Refuse, before any work, the environment variables the user set that a
    command reads: ``$NPFORMER_BACKEND`` in place of ``--backend``, and under an
    MPI launcher the ranks' time limits (npformer/runtime/distributed/launch.py)."""
    from npformer.runtime.distributed.launch import ranks_from_env, seconds_from_env
    name = os.environ.get("NPFORMER_BACKEND", "")
    if getattr(args, "backend", "") is None and name and name.lower() not in BACKEND_NAMES:
        raise UserError(f"$NPFORMER_BACKEND={name!r}: unknown backend; expected one of {', '.join(BACKEND_NAMES)} "
                        "(or give --backend)")
    if ranks_from_env() is not None:
        for variable in ("NPFORMER_COMM_TIMEOUT", "NPFORMER_WAIT_TIMEOUT"):
            seconds_from_env(variable, 0.0)


def add_checkpoint_arg(p) -> None:
    """--checkpoint: a checkpoint file or a run directory (``checkpoint_file``)."""
    p.add_argument("--checkpoint", required=True, metavar="CKPT|RUN_DIR",
                   help="a .npz checkpoint written by npformer train, or its run directory: then its best.npz "
                        "(the best by dev BLEU; last.npz where there is none)")


def checkpoint_file(path: str, command: str) -> str:
    """The checkpoint ``--checkpoint`` names: the file itself, or in a run directory
    its best.npz (else last.npz), and then which one, with the evaluation that made
    it the best, is said on stderr: "using runs/x/best.npz (dev BLEU 23.1 at step 1400)"."""
    from npformer.checkpoint import read_meta
    if not os.path.isdir(path):
        return path
    for name in ("best.npz", "last.npz"):
        chosen = os.path.join(path, name)
        if os.path.isfile(chosen):
            print(f"npformer {command}: using {chosen} ({describe_checkpoint(read_meta(chosen))})",
                  file=sys.stderr, flush=True)
            return chosen
    raise UserError(f"checkpoint {path}: is a directory without best.npz or last.npz; expected the run "
                    "directory of npformer train --out, or a .npz file")


def describe_checkpoint(meta: dict) -> str:
    """"dev BLEU 23.1 at step 1400": the evaluation at the checkpoint's step, else the step."""
    step = meta["step"]
    record = next((r for r in reversed(meta["history"]) if r.get("kind") == "eval" and r.get("step") == step), {})
    if "dev_bleu" in record:
        return f"dev BLEU {record['dev_bleu']:.1f} at step {step}"
    if "val_loss" in record:
        return f"dev loss {record['val_loss']:.3f} at step {step}"
    return f"step {step}"


def add_decoding_args(p) -> None:
    """--beam, --alpha, --max-len-a, --max-len-b, --no-repeat-ngram and --paper-decoding.
    The defaults are ``translation.DECODING`` (beam 4, alpha 1.0, at most 1.2 x source + 5
    tokens, no repeated run of 4 subword tokens); ``--paper-decoding`` starts from the
    paper's instead (beam 4, alpha 0.6, input + 50, no ban). An option given explicitly
    overrides either."""
    from npformer.translation import DECODING, PAPER_DECODING
    d, paper = DECODING, PAPER_DECODING
    g = p.add_argument_group("decoding", "the default decodes without loops: a model trained for minutes "
                             "repeats itself under the paper's settings (docs/tuning.md)")
    g.add_argument("--beam", type=int_at_least(1), default=None,
                   help=f"beam size; 1 = greedy (default {d['beam_size']}; paper {paper['beam_size']})")
    g.add_argument("--alpha", type=number_at_least(0), default=None,
                   help=f"length penalty alpha of the beam search (default {d['alpha']:g}; paper {paper['alpha']:g})")
    g.add_argument("--max-len-a", type=number_at_least(0), default=None,
                   help=f"outputs get at most A * (source tokens) + B tokens "
                        f"(default A = {d['max_len_a']:g}; paper {paper['max_len_a']:g})")
    g.add_argument("--max-len-b", type=int_at_least(0), default=None,
                   help=f"see --max-len-a (default B = {d['max_len_b']}; paper {paper['max_len_b']})")
    g.add_argument("--no-repeat-ngram", type=int_at_least(0), default=None, metavar="N",
                   help="forbid an output to repeat any N subword tokens, a heuristic against loops that the "
                        f"paper does not use; 0 = off (default {d['no_repeat_ngram']}; paper 0)")
    g.add_argument("--paper-decoding", action="store_true",
                   help="start from the paper's decoding (§6.1): beam 4, alpha 0.6, at most input + 50 "
                        "tokens, no n-gram ban")


def decoding_settings(args) -> dict:
    """The keyword arguments of ``translate``/``evaluate_pairs`` from ``add_decoding_args``' options:
    the default or the paper's settings, with each option given explicitly on top."""
    from npformer.translation import DECODING, PAPER_DECODING
    settings = dict(PAPER_DECODING if args.paper_decoding else DECODING)
    given = dict(beam_size=args.beam, alpha=args.alpha, max_len_a=args.max_len_a, max_len_b=args.max_len_b,
                 no_repeat_ngram=args.no_repeat_ngram)
    settings.update({k: v for k, v in given.items() if v is not None})
    return settings


def add_shape_args(p) -> None:
    """The model's depth and FFN width, over the preset's."""
    p.add_argument("--layers", dest="n_layers", type=int_at_least(1),
                   help="N, the layers of each stack (default: the recipe's for translation, one fewer than "
                        "the preset's below 1M training words or 3,000 expected steps; the preset's for tasks)")
    p.add_argument("--d-ff", type=int_at_least(1), help="the FFN's inner width (default: the preset's)")


def add_recipe_args(p, task_defaults: dict | None = None) -> None:
    """The options of the settings that the recipe derives (npformer/train/recipe.py);
    each overrides its derived value. ``task_defaults``: the synthetic tasks' fixed
    values, named in the help of ``npformer train``."""
    def default(key):
        task = "" if task_defaults is None else f"; task: {task_defaults[key]}"
        return f"(default: derived from the corpus and budget{task})"
    p.add_argument("--merges", type=int_at_least(0), help=f"BPE merges of the shared vocabulary {default('merges')}")
    p.add_argument("--norm", choices=("post", "pre"),
                   help="LayerNorm after each residual (post, the paper's) or before each sublayer with a "
                        f"final LayerNorm per stack (pre) {default('norm')}")
    p.add_argument("--max-tokens", type=int_at_least(1),
                   help=f"padded positions per batch, B x longest {default('max_tokens')}")
    p.add_argument("--p-drop", type=number_at_least(0), help=f"dropout rate {default('p_drop')}")
    p.add_argument("--schedule", choices=("linear", "noam"),
                   help="learning rate: warmup then linear decay to 0 at the end of the budget (linear), or "
                        f"the paper's §5.3 warmup then inverse square root (noam) {default('schedule')}")
    p.add_argument("--lr", type=number_at_least(0, strict=True),
                   help=f"peak learning rate of the linear schedule {default('lr')}")
    p.add_argument("--warmup", type=int_at_least(1), help=f"warmup steps of the schedule {default('warmup')}")
    p.add_argument("--lr-factor", type=number_at_least(0, strict=True),
                   help="scales the paper's schedule (--schedule noam; default "
                        f"{CORPUS_DEFAULTS['lr_factor']}" + ("" if task_defaults is None else
                                                             f"; task: {task_defaults['lr_factor']}") + ")")
