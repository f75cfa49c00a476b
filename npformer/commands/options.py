"""What the commands share: option types, the backend and decoding options, the
optional extras a command needs, and the translation settings of ``train`` and ``demo``.

Every command module defines ``add_parser(sub)`` (adds its parser and sets
``func``) and imports what it shares with the others from here, never from a
sibling command.
"""
from __future__ import annotations

import argparse
import importlib
import math

from npformer.backend import BACKEND_NAMES, DTYPES

# The extra of setup.cfg that installs each optional module.
EXTRAS = {"sacrebleu": "eval", "threadpoolctl": "train", "tqdm": "train", "matplotlib": "plot"}


def require(module: str, purpose: str) -> None:
    """Refuse to start, naming the extra to install, when ``module`` cannot be imported.

    Commands call it before their work begins, so that a missing optional
    dependency costs seconds, not a training run."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise RuntimeError(f"{purpose} needs {module}, which is not installed: "
                           f"pip install 'npformer[{EXTRAS[module]}]'") from None


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


def add_decoding_args(p, beam=4, alpha=0.6, max_len_a=1.0, max_len_b=50) -> None:
    """--beam, --alpha, --max-len-a, --max-len-b. The defaults are the paper's decoding
    (§6.1): beam 4, length penalty 0.6, outputs up to input length + 50 tokens."""
    p.add_argument("--beam", type=int_at_least(1), default=beam, help=f"beam size; 1 = greedy (default {beam})")
    p.add_argument("--alpha", type=number_at_least(0), default=alpha,
                   help=f"length penalty alpha of the beam search (default {alpha:g})")
    p.add_argument("--max-len-a", type=number_at_least(0), default=max_len_a,
                   help=f"outputs get at most A * (source tokens) + B tokens (default A = {max_len_a:g})")
    p.add_argument("--max-len-b", type=int_at_least(0), default=max_len_b,
                   help=f"see --max-len-a (default B = {max_len_b})")


def decoding_settings(args) -> dict:
    """The keyword arguments of ``translate``/``evaluate_pairs`` from ``add_decoding_args``' options."""
    return dict(beam_size=args.beam, alpha=args.alpha, max_len_a=args.max_len_a, max_len_b=args.max_len_b)


# Translation's settings (the bundled corpus, or --data PATH): the small preset,
# a shared BPE vocabulary of 8000 merges, pairs of up to 100 subwords, batches
# of about 2000 padded positions, and a short warmup for CPU-sized budgets.
# ``npformer train`` uses them as they are; ``npformer demo`` switches dropout off.
CORPUS_DEFAULTS = dict(task="translate", data=None, merges=8000, preset="small", norm="post", vocab_size=None,
                       min_len=None, max_len=100, p_drop=0.1, label_smoothing=0.1, batch_size=None,
                       max_tokens=2000, seed=0, lr_factor=0.5, warmup=300, clip=None, dtype="float32",
                       steps=None)


def model_config(settings: dict):
    """The TransformerConfig of a run's settings: its preset, norm placement, V,
    dropout and label smoothing, and a positional table long enough for its
    longest sequence."""
    from npformer.model.config import preset
    overrides = dict(vocab_size=settings["vocab_size"], p_drop=settings["p_drop"],
                     eps_ls=settings["label_smoothing"], norm=settings.get("norm", "post"))
    cfg = preset(settings["preset"], **overrides)
    return cfg.replace(max_len=max(cfg.max_len, settings["max_len"] + 1))  # + 1: BOS / EOS
