"""The Transformer of Figure 1, assembled from the ops.

    config.py       TransformerConfig and the presets (base, big, small, tiny)
    params.py       parameter dict: shapes, initialisation, counts
    masks.py        padding and look-ahead masks from token ids
    sublayer.py     Add & Norm: LayerNorm(x + Dropout(Sublayer(x)))
    encoder.py      EncoderLayer and the N-layer encoder
    decoder.py      DecoderLayer (masked self-, cross-attention, FFN) and the decoder
    transformer.py  embeddings, the whole model's forward and backward, the loss

The float64 gradient checks of the layers and the whole model are in
npformer/verify/model_cases.py.
"""
from npformer.model.config import PRESETS, TransformerConfig, preset
from npformer.model.params import count_params, init_params
from npformer.model.transformer import loss_and_grads, transformer_backward, transformer_forward

__all__ = ["TransformerConfig", "PRESETS", "preset", "init_params", "count_params",
           "transformer_forward", "transformer_backward", "loss_and_grads"]
