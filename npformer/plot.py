"""Pictures of a training run: curves, attention maps, the positional encoding.

matplotlib is an optional extra (``pip install npformer[plot]``); the figures
are written as PNG files with the non-interactive Agg backend.

    plot_curves(history, path)                    training/dev loss and learning rate against step
    plot_attention(translator, sentence, out_dir) one grid (layers x heads) per attention type:
                                                  encoder self-, decoder self- and cross-attention
    plot_positional(d_model, max_len, path)       the PE matrix of §3.5
    plot_gradient_flow(flow, path)                per-layer gradient norms at init, post-LN beside pre-LN
    plot_runs({label: history}, path)             the training loss of several runs in one plot

What the user can fix (a run with nothing to plot, an empty sentence, no
matplotlib) is a ``UserError``; a figure that cannot be written raises
``OSError`` naming its path.
"""
from __future__ import annotations

import os

import numpy as np

from npformer.errors import UserError

from npformer.data.batching import pad_sequences
from npformer.decode import greedy_decode
from npformer.decode.shared import EXTRA_OUTPUT_LENGTH, output_length_rule
from npformer.model.params import params_backend
from npformer.model.transformer import transformer_forward
from npformer.ops.positional import sinusoidal_table


def _save(plt, fig, path: str) -> str:
    """Lay ``fig`` out, write it to ``path`` (PNG) and free it; returns ``path``."""
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:  # name the figure (a full disk's error names no file)
        raise OSError(e.errno, f"cannot write the figure ({e.strerror or e})", path) from e
    finally:
        plt.close(fig)
    return path


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise UserError("plotting needs matplotlib: pip install 'npformer[plot]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_curves(history: list, path: str) -> str:
    plt = _pyplot()
    train = [r for r in history if r.get("kind") == "train"]
    evals = [r for r in history if r.get("kind") == "eval" and "val_loss" in r]
    if not train:
        raise UserError("plot: the run's history has no training records; expected the checkpoint of a run "
                        "that trained at least one step")
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if evals:
        ax_loss.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="dev loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("label-smoothed cross-entropy")
    ax_loss.legend()
    ax_lr.plot([r["step"] for r in train], [r["lr"] for r in train])
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    bleu = [r for r in evals if "dev_bleu" in r]
    if bleu:
        ax_bleu = ax_loss.twinx()
        ax_bleu.plot([r["step"] for r in bleu], [r["dev_bleu"] for r in bleu], "s--", color="tab:green")
        ax_bleu.set_ylabel("dev BLEU", color="tab:green")
    return _save(plt, fig, path)


def attention_maps(translator, sentence: str) -> dict:
    """Translate ``sentence`` greedily, then re-run the model teacher-forced on
    its own output and collect the weights P of every attention sublayer.

    Returns {"src_tokens", "tgt_tokens", "encoder", "decoder_self", "cross"},
    the last three as arrays (n_layers, h, T_query, T_key).
    """
    params, cfg, tok = translator.params, translator.cfg, translator.tokenizer
    be = params_backend(params)
    src_ids = tok.encode(sentence)[:cfg.max_len]
    if not src_ids:
        raise UserError("plot: the sentence is empty; expected a source sentence to translate")
    src = be.asarray(pad_sequences([src_ids], cfg.pad_id))
    # the decoders' output-length rule, one short of the table: BOS joins the output below
    hyp = greedy_decode(params, cfg, src, max_len=output_length_rule([len(src_ids)], 1.0, EXTRA_OUTPUT_LENGTH,
                                                                     cfg.max_len - 1))[0]
    tgt_in = be.asarray(pad_sequences([[cfg.bos_id] + hyp], cfg.pad_id))
    _, cache = transformer_forward(params, cfg, src, tgt_in)

    def stack(ps):
        return np.stack([be.to_host(p)[0] for p in ps])  # (n_layers, h, T_q, T_k)

    return {"src_tokens": [tok.id_to_token(i) for i in src_ids],
            "tgt_tokens": [tok.id_to_token(i) for i in [cfg.bos_id] + hyp],
            "encoder": stack([layer.self_attn.weights for layer in cache.encoder.layers]),
            "decoder_self": stack([layer.self_attn.weights for layer in cache.decoder.layers]),
            "cross": stack([layer.cross_attn.weights for layer in cache.decoder.layers])}


def plot_attention(translator, sentence: str, out_dir: str) -> list[str]:
    plt = _pyplot()
    maps = attention_maps(translator, sentence)
    src, tgt = maps["src_tokens"], maps["tgt_tokens"]
    labels = {"encoder": (src, src), "decoder_self": (tgt, tgt), "cross": (tgt, src)}
    titles = {"encoder": "encoder self-attention", "decoder_self": "decoder self-attention (masked)",
              "cross": "encoder-decoder attention"}
    paths = []
    for kind in ("encoder", "decoder_self", "cross"):
        P = maps[kind]
        n_layers, h = P.shape[:2]
        q_labels, k_labels = labels[kind]
        size = max(2.5, 0.22 * max(len(q_labels), len(k_labels)))
        fig, axes = plt.subplots(n_layers, h, figsize=(size * h, size * n_layers), squeeze=False)
        for layer in range(n_layers):
            for head in range(h):
                ax = axes[layer][head]
                ax.imshow(P[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
                ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
                ax.set_xticks(range(len(k_labels)))
                ax.set_xticklabels(k_labels, rotation=90, fontsize=6)
                ax.set_yticks(range(len(q_labels)))
                ax.set_yticklabels(q_labels, fontsize=6)
        fig.suptitle(titles[kind])
        fig.tight_layout()
        path = os.path.join(out_dir, f"attention_{kind}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_positional(d_model: int, max_len: int, path: str) -> str:
    plt = _pyplot()
    pe = sinusoidal_table(max_len, d_model, np, "float64")
    fig, ax = plt.subplots(figsize=(8, 4))
    im = ax.imshow(pe, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    ax.set_xlabel("dimension (even: sin, odd: cos)")
    ax.set_ylabel("position")
    ax.set_title(f"sinusoidal positional encoding, d_model={d_model}")
    fig.colorbar(im)
    return _save(plt, fig, path)


def plot_gradient_flow(flow: dict, path: str, title: str = "") -> str:
    """Post-LN and pre-LN side by side (shared y axis from 0): each layer's weight-gradient
    norm at initialisation against its index, one line per stack (npformer.verify.gradient_flow)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, norm in zip(axes, ("post", "pre")):
        for stack, marker in (("encoder", "o-"), ("decoder", "s-")):
            values = flow[norm][stack]
            ax.plot(range(1, len(values) + 1), values, marker, label=stack)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("layer (1 = nearest the input)")
        ax.set_xticks(range(1, len(flow[norm]["encoder"]) + 1))
        ax.set_title(f"{norm}-LN")
        ax.legend()
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("||dL/dW|| over the layer's weight matrices")
    if title:
        fig.suptitle(title)
    return _save(plt, fig, path)


def plot_runs(histories: dict, path: str, title: str = "") -> str:
    """Training loss against step for several runs in one plot: {label: history}."""
    plt = _pyplot()
    for label, history in histories.items():
        if not any(r.get("kind") == "train" for r in history):
            raise UserError(f"plot: run {label!r} has no training records; expected the checkpoint of a run "
                            "that trained at least one step")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, history in histories.items():
        train = [r for r in history if r.get("kind") == "train"]
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (label-smoothed cross-entropy)")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(True, alpha=0.3)
    return _save(plt, fig, path)
