"""Recurrent cells: pure values built by lowercase constructors (see :class:`Cell`).

Classic nonlinear cells (``rnn``, ``lstm``, ``gru``) run step by step and carry a
:class:`ProjectedForm` for the fused path of :mod:`recurrax.kernels.fused_gated`; the linear recurrences
(``lru``, ``s5``, ``mamba``, ``rglru``, ``mingru``, ``minlstm``) also carry a :class:`LinearForm`
and run in parallel over time; the selective state spaces (``mamba``, ``mamba2``) carry a
:class:`SelectiveForm` for the fused selective scan and the chunked state-space-dual form.
"""

from jax import export

from recurrax.cells.base import Cell, LinearForm, SelectiveForm, SelectiveInputs, param_count
from recurrax.cells.gru import GRUState, gru
from recurrax.cells.lru import LRUState, lru
from recurrax.cells.lstm import LSTMState, lstm
from recurrax.cells.mamba import MambaState, mamba
from recurrax.cells.mamba2 import Mamba2State, mamba2
from recurrax.cells.mingru import MinGRUState, MinLSTMState, mingru, minlstm
from recurrax.cells.rglru import RGLRUState, rglru
from recurrax.cells.rnn import RNNState, rnn
from recurrax.cells.s5 import S5State, s5

# The carries can cross jax.export's serialisation (an exported function that takes or returns
# carries, e.g. a streaming step), which needs each NamedTuple registered under a stable name.
for _state in (
    GRUState, LRUState, LSTMState, Mamba2State, MambaState, MinGRUState, MinLSTMState,
    RGLRUState, RNNState, S5State,
):  # fmt: skip
    export.register_namedtuple_serialization(_state, serialized_name=f"recurrax.{_state.__name__}")

__all__ = [
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
    "SelectiveForm",
    "SelectiveInputs",
    "gru",
    "lru",
    "lstm",
    "mamba",
    "mamba2",
    "mingru",
    "minlstm",
    "param_count",
    "rglru",
    "rnn",
    "s5",
]
