"""Attention masks built from token ids. True means "may attend".

    encoder self-attention : source padding mask          (B, 1, 1, S)
    cross-attention        : the same source padding mask  (B, 1, 1, S)
    decoder self-attention : look-ahead AND target padding (B, 1, T, T)

The singleton axes broadcast over heads (and, for padding, over queries).
"""
from npformer.backend import backend_of
from npformer.special_tokens import PAD_ID


def padding_mask(ids, pad_id=PAD_ID):
    """(B, L) ids -> (B, 1, 1, L): key position is a real token."""
    return (ids != pad_id)[:, None, None, :]


def lookahead_mask(T, xp):
    """(1, 1, T, T): query t may attend to keys 0..t (not to the future)."""
    return xp.tril(xp.ones((T, T), dtype=bool))[None, None]


def target_mask(tgt_in, pad_id=PAD_ID):
    """(B, T) decoder input ids -> (B, 1, T, T): no future and no padding keys."""
    xp = backend_of(tgt_in).xp
    return padding_mask(tgt_in, pad_id) & lookahead_mask(tgt_in.shape[1], xp)
