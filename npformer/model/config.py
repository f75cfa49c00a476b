"""Model configuration, with the paper's presets (Table 3) and small CPU presets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from npformer.special_tokens import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 8000          # V, shared by source and target when tied
    d_model: int = 512              # width of every sublayer's output
    h: int = 8                      # attention heads; d_k = d_v = d_model / h
    d_ff: int = 2048                # inner width of the feed-forward net
    n_layers: int = 6               # N: encoder layers = decoder layers
    p_drop: float = 0.1             # P_drop: residual dropout and embedding dropout
    eps_ls: float = 0.1             # label smoothing
    max_len: int = 512              # rows of the positional-encoding table
    tie_embeddings: bool = True     # §3.4: source, target and pre-softmax weights shared
    norm: str = "post"              # "post": LayerNorm(x + Sublayer(x)), the paper's; "pre": x + Sublayer(LayerNorm(x))
    tgt_vocab_size: int | None = None  # only when untied: a separate target vocabulary
    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "h", "d_ff", "n_layers", "max_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"config: {name} must be a positive integer, got {v!r}")
        if self.d_model % self.h:
            raise ValueError(f"config: d_model={self.d_model} is not divisible by h={self.h}; "
                             "expected d_model = h * d_k")
        if self.d_model % 2:
            raise ValueError(f"config: d_model must be even for the sinusoidal encoding, got {self.d_model}")
        if not 0.0 <= self.p_drop < 1.0:
            raise ValueError(f"config: p_drop must be in [0, 1), got {self.p_drop}")
        if not 0.0 <= self.eps_ls < 1.0:
            raise ValueError(f"config: eps_ls must be in [0, 1), got {self.eps_ls}")
        if self.norm not in ("post", "pre"):
            raise ValueError(f"config: norm must be 'post' (the paper's) or 'pre', got {self.norm!r}")
        if self.tie_embeddings and self.tgt_vocab_size not in (None, self.vocab_size):
            raise ValueError("config: tie_embeddings needs one shared vocabulary; "
                             f"got tgt_vocab_size={self.tgt_vocab_size} != vocab_size={self.vocab_size}")
        for name in ("pad_id", "bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < min(self.vocab_size, self.target_vocab):
                raise ValueError(f"config: {name}={getattr(self, name)} is outside the vocabulary")

    @property
    def d_k(self) -> int:
        return self.d_model // self.h

    @property
    def target_vocab(self) -> int:
        return self.tgt_vocab_size or self.vocab_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"config: unknown fields {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**d)

    def replace(self, **changes) -> "TransformerConfig":
        return replace(self, **changes)


PRESETS = {
    # the paper's Table 3
    "base": dict(d_model=512, h=8, d_ff=2048, n_layers=6, p_drop=0.1, eps_ls=0.1),
    "big": dict(d_model=1024, h=16, d_ff=4096, n_layers=6, p_drop=0.3, eps_ls=0.1),
    # CPU-sized
    "small": dict(d_model=256, h=4, d_ff=1024, n_layers=3, p_drop=0.1, eps_ls=0.1),
    "tiny": dict(d_model=64, h=4, d_ff=256, n_layers=2, p_drop=0.1, eps_ls=0.1, max_len=256),
}


def preset(name: str, **overrides) -> TransformerConfig:
    """A config from a preset name, with any field overridden."""
    if name not in PRESETS:
        raise ValueError(f"preset: unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    return TransformerConfig(**{**PRESETS[name], **overrides})
