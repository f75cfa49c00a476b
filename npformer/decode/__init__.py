"""Inference: turning a source sentence into an output sentence. Paper §6.1.

    encode(params, cfg, src) -> (memory, src_mask)             the encoder, once per sentence
    init_decoder_state / decode_step / reorder                  the key/value-cached decoder (incremental.py)
    greedy_decode(params, cfg, src, max_len=None)               argmax at every step (greedy.py)
    beam_search(params, cfg, src, beam_size=4, alpha=0.6)       beam search, length penalty (beam.py)

Shared plumbing (input checks, output limits, next-token log-probabilities and
the cached / uncached decoders) is in shared.py.
"""
from npformer.decode.beam import Hypothesis, beam_search, length_penalty
from npformer.decode.greedy import greedy_decode
from npformer.decode.incremental import (DecoderState, LayerKV, decode_step, encode, init_decoder_state,
                                         reorder, teacher_forced_logits)

__all__ = ["encode", "DecoderState", "LayerKV", "init_decoder_state", "decode_step", "reorder",
           "teacher_forced_logits",
           "greedy_decode", "beam_search", "Hypothesis", "length_penalty"]
