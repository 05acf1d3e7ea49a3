"""recurrax: recurrent sequence models in JAX.

Pure-function cells (``rnn``, ``lstm``, ``gru`` and the linear recurrences ``lru``, ``s5``,
``mamba``, ``mamba2``, ``rglru``, ``mingru``, ``minlstm``), one scan driver (``unroll``) with exact padding,
mask, reset and reverse semantics, a parallel engine for linear recurrences (``linear_scan``),
sequence layers, Flax adapters and gradient diagnostics.
"""

from recurrax.cells import (
    Cell,
    GRUState,
    LinearForm,
    LRUState,
    LSTMState,
    Mamba2State,
    MambaState,
    MinGRUState,
    MinLSTMState,
    RGLRUState,
    RNNState,
    S5State,
    gru,
    lru,
    lstm,
    mamba,
    mamba2,
    mingru,
    minlstm,
    param_count,
    rglru,
    rnn,
    s5,
)
from recurrax.diagnostics import Spectrum, recurrent_spectrum, state_gradient_norms
from recurrax.driver import unroll
from recurrax.kernels.linear_scan import linear_scan
from recurrax.layers import (
    BidirectionalState,
    SequenceLayer,
    VariationalDropout,
    bidirectional,
    recurrent,
    stacked,
)
from recurrax.pooling import attention_pooling, pool_last, pool_mean
from recurrax.readout import dense, embedding

__all__ = [
    "BidirectionalState",
    "Cell",
    "GRUState",
    "LRUState",
    "LSTMState",
    "LinearForm",
    "Mamba2State",
    "MambaState",
    "MinGRUState",
    "MinLSTMState",
    "RGLRUState",
    "RNNState",
    "S5State",
    "SequenceLayer",
    "Spectrum",
    "VariationalDropout",
    "attention_pooling",
    "bidirectional",
    "dense",
    "embedding",
    "gru",
    "linear_scan",
    "lru",
    "lstm",
    "mamba",
    "mamba2",
    "mingru",
    "minlstm",
    "param_count",
    "pool_last",
    "pool_mean",
    "recurrent",
    "recurrent_spectrum",
    "rglru",
    "rnn",
    "s5",
    "stacked",
    "state_gradient_norms",
    "unroll",
]
