"""recurrax: recurrent sequence models in JAX.

Pure-function cells (``rnn``, ``lstm``, ``gru`` and the linear recurrences ``lru``, ``s5``,
``mamba``, ``mamba2``, ``rglru``, ``mingru``, ``minlstm``), one scan driver (``unroll``) with exact padding,
mask, reset and reverse semantics, a parallel engine for linear recurrences (``linear_scan``),
sequence layers, Flax adapters and gradient diagnostics.

The submodules are attributes of the package: those the names above need are imported with it,
and the ones that pull in more (``nn`` imports Flax, ``optim`` Optax, ``train``, ``run`` and
``checkpoint`` Orbax; ``models``, ``tasks``, ``metrics``) on first use, so ``import recurrax``
stays as fast as importing JAX.
"""

import importlib

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
from recurrax.cells.custom import custom_cell
from recurrax.diagnostics import Spectrum, recurrent_spectrum, state_gradient_norms
from recurrax.driver import unroll
from recurrax.kernels.linear_scan import linear_scan
from recurrax.layers import (
    BidirectionalState,
    SequenceLayer,
    VariationalDropout,
    bidirectional,
    recurrent,
    residual_block,
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
    "custom_cell",
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
    "residual_block",
    "rglru",
    "rnn",
    "s5",
    "stacked",
    "state_gradient_norms",
    "unroll",
]

SUBMODULES = (
    "attention",
    "cells",
    "checkpoint",
    "decoding",
    "diagnostics",
    "driver",
    "kernels",
    "layers",
    "metrics",
    "models",
    "nn",
    "optim",
    "paths",
    "pooling",
    "readout",
    "run",
    "scheduled_sampling",
    "seq2seq",
    "tasks",
    "text",
    "train",
)


def __getattr__(name: str):
    # (PEP 562: called only for names the module does not have yet, i.e. lazy submodules)
    if name in SUBMODULES:
        return importlib.import_module(f"recurrax.{name}")
    raise AttributeError(f"module 'recurrax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBMODULES))
