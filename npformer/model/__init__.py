"""The Transformer of Figure 1, assembled from the ops.

    config.py       TransformerConfig and the presets (base, big, small, tiny)
    params.py       parameter dict: shapes, initialisation, counts
    masks.py        padding and look-ahead masks from token ids
    sublayer.py     Add & Norm: LayerNorm(x + Dropout(Sublayer(x)))
    encoder.py      EncoderLayer and the N-layer encoder
    decoder.py      DecoderLayer (masked self-, cross-attention, FFN) and the decoder
    transformer.py  embeddings, the whole model's forward and backward, the loss

This package is also the namespace of the model's building blocks (a sublayer, a
layer, a stack, the embedding step, the model), which the blocks call each other
through, read at call time: ``model.sublayer_out_backward(...)`` in encoder.py,
``model.encoder_layer_backward(...)`` in the stack, ``model.transformer_backward``
in ``loss_and_grads``, as they call the ops through ``npformer.ops`` (whose
docstring says why). ``swapped`` replaces blocks here and nowhere else. A block's
own parts are plain calls: ``sublayer_out_*`` is ``add_norm_*`` in post-LN.

The float64 gradient checks of the layers and the whole model are in
npformer/verify/model_cases.py.
"""
from npformer.model.config import PRESETS, TransformerConfig, preset
from npformer.model.params import count_params, init_params
from npformer.model.sublayer import (add_norm_backward, add_norm_forward, final_norm_backward, final_norm_forward,
                                     sublayer_in_backward, sublayer_in_forward, sublayer_out_backward,
                                     sublayer_out_forward)
from npformer.model.encoder import encoder_backward, encoder_forward, encoder_layer_backward, encoder_layer_forward
from npformer.model.decoder import decoder_backward, decoder_forward, decoder_layer_backward, decoder_layer_forward
from npformer.model.transformer import (embed_backward, embed_forward, loss_and_grads, transformer_backward,
                                        transformer_forward)
from npformer.ops import swapped_in

__all__ = ["TransformerConfig", "PRESETS", "preset", "init_params", "count_params",
           "add_norm_forward", "add_norm_backward", "sublayer_in_forward", "sublayer_in_backward",
           "sublayer_out_forward", "sublayer_out_backward", "final_norm_forward", "final_norm_backward",
           "encoder_layer_forward", "encoder_layer_backward", "encoder_forward", "encoder_backward",
           "decoder_layer_forward", "decoder_layer_backward", "decoder_forward", "decoder_backward",
           "embed_forward", "embed_backward", "transformer_forward", "transformer_backward", "loss_and_grads",
           "FUNCTIONS", "swapped"]
# the names ``swapped`` may replace: every block's forward and backward, and loss_and_grads
FUNCTIONS = tuple(n for n in __all__ if n.endswith(("_forward", "_backward"))) + ("loss_and_grads",)

def swapped(functions: dict):
    """While inside, ``npformer.model.<name>`` is ``functions[name]`` (name -> function, names from
    FUNCTIONS), for every block that uses it; nothing else changes, and the blocks are the
    reference again on exit, also after an exception (``npformer.ops.swapped_in``)."""
    return swapped_in(globals(), FUNCTIONS, functions)
