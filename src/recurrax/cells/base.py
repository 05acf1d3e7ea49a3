"""The cell contract: a recurrent cell is an immutable value made of pure functions.

A constructor such as ``recurrax.lstm(hidden_size, ...)`` closes over the hyperparameters and returns
a :class:`Cell`; nothing about it needs to be static under ``jit``. The maths is written for one
example (``x`` is ``(D,)``, carry leaves are ``(H,)``); :func:`recurrax.unroll` adds time, padding
and direction, and ``vmap`` adds the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array, Carry, Key, Params
from recurrax.validation import check_choice

BiasConvention = Literal["one", "two"] | None


class LinearForm(NamedTuple):
    r"""The time-parallel form of a cell whose state obeys :math:`h_t = a_t \odot h_{t-1} + b_t`.

    With it :func:`recurrax.unroll` can run the cell through :func:`recurrax.linear_scan`
    (sequential, associative or chunked) instead of stepping it, with the same results. All three
    functions see one example, already in processing order (reversed when running in reverse).

    Attributes:
      prepare: ``prepare(params, xs, valid, starts, carry0, reset_carry) -> (a, b, aux)``: the
        coefficients ``(T, N)`` of every step, computed in parallel from the inputs ``xs (T, D)``,
        plus anything ``finish`` needs (``aux``, arrays with a leading ``T``). ``valid``/``starts``
        ``(T,)``, the initial carry and the carry that resets return to are there for state that
        is not part of ``h`` (e.g. a convolution window).
      finish: ``finish(params, hs, aux) -> (ys, carries)``: outputs ``(T, output_size)`` and the
        carry after every step (a carry pytree with a leading ``T``) from the states ``hs (T, N)``.
      state: ``state(carry) -> (N,)``, the part of the carry that the linear recurrence updates.
      log_space: when True, ``prepare`` returns ``(log a, log b)`` of positive coefficients,
        ``state`` returns the log of the (positive) state, ``finish`` receives log states, and the
        recurrence is solved in log space (see :func:`recurrax.linear_scan`).
    """

    prepare: Callable
    finish: Callable
    state: Callable[[Carry], Array]
    log_space: bool = False


class SelectiveInputs(NamedTuple):
    r"""The input-dependent coefficients of a selective state space over ``T`` steps.

    With ``E`` channels, ``N`` state entries per channel and ``G`` groups of ``E/G`` consecutive
    channels that share ``B`` and ``C``, the state :math:`h_t \in \mathbb{R}^{E \times N}` obeys

    .. math::

        h_t = \exp(\Delta_t \otimes A) \odot h_{t-1} + (\Delta_t \odot u_t) \otimes B_t,
        \qquad y_t = h_t\, C_t \in \mathbb{R}^E

    (row ``e`` of :math:`h_t` uses the ``B`` and ``C`` of its group).

    Attributes:
      delta: ``(T, E)`` step sizes, positive.
      A: ``(E, N)`` continuous-time decay rates, negative.
      B: ``(T, G, N)`` input maps.
      C: ``(T, G, N)`` output maps.
      u: ``(T, E)`` the inputs of the state space.
    """

    delta: Array
    A: Array
    B: Array
    C: Array
    u: Array


class SelectiveForm(NamedTuple):
    r"""The form of a cell whose state is a selective state space (Mamba, Mamba-2).

    With it :func:`recurrax.unroll` runs the state space with the fused selective scan
    (``method="fused"``: the ``(E, N)`` state lives only inside the loop and no ``(T, E, N)`` array
    is stored forwards or backwards), and, for cells with a scalar decay per head, with the chunked
    state-space-dual algorithm (``method="chunked"``). The functions see one example, already in
    processing order.

    Attributes:
      prepare: ``prepare(params, xs, valid, starts, carry0, reset_carry) -> (SelectiveInputs,
        aux)``: the coefficients of every step, computed in parallel from ``xs (T, D)``, plus what
        ``finish`` needs (``aux``). ``valid``/``starts`` and the carries are there for state that
        is not part of ``h`` (e.g. a convolution window).
      finish: ``finish(params, ys, h, aux) -> (outputs, carry)``: the outputs ``(T, output_size)``
        from the state space's outputs ``ys (T, E)``, and the final carry from the final state
        ``h (E, N)``.
      state: ``state(carry) -> (E, N)``, the state space's part of the carry.
      heads: None, or ``H`` when ``delta`` is shared by each head of ``E/H`` consecutive channels
        and ``A`` is constant within a head (a scalar decay per head, as in Mamba-2): then the
        chunked state-space-dual form applies.
    """

    prepare: Callable
    finish: Callable
    state: Callable[[Carry], Array]
    heads: int | None = None


class ProjectedForm(NamedTuple):
    r"""The split of a gated cell into an input projection and a recurrent update.

    A classic cell computes :math:`(c_t, y_t) = \mathrm{gates}(c_{t-1},\; h_{t-1} W_h,\; x_t W_x
    + b)`: the input projection does not depend on the state, so it can be computed for all steps
    at once (one large matrix multiply) and only :math:`h_{t-1} W_h` and the elementwise gates stay
    in the loop. With it :func:`recurrax.unroll` can take the fused path (``method="fused"``, see
    :mod:`recurrax.kernels.fused_gated`), whose backward pass carries only the state gradient through time and
    forms the gradient of :math:`W_h` afterwards as one matrix multiply. The cell's ``step`` is
    :func:`projected_step` of this form, so both paths compute the same function.

    Like ``step``, the functions see one example (``x`` is ``(D,)``, carry leaves ``(H,)``).

    Attributes:
      project: ``project(params, x) -> zx``: the input ``(D,)`` to ``(G*H,)``, biases included.
      kernel: ``kernel(params) -> W_h``, the ``(H, G*H)`` recurrent kernel.
      hidden: ``hidden(carry) -> h``: the part of the carry that multiplies the kernel.
      gate_params: ``gate_params(params) -> dict``: the (small) params ``gates`` reads.
      gates: ``gates(gate_params, carry, hW, zx) -> carry``, the new carry, elementwise given
        ``hW = hidden(carry) @ W_h`` and ``zx``. The step's output is
        the new hidden state, ``y = hidden(carry)``.
    """

    project: Callable[[Params, Array], Array]
    kernel: Callable[[Params], Array]
    hidden: Callable[[Carry], Array]
    gate_params: Callable[[Params], Params]
    gates: Callable[[Params, Carry, Array, Array], Carry]


def projected_step(form: ProjectedForm) -> Callable:
    """The ``step(params, carry, x)`` of a cell given by its :class:`ProjectedForm`."""

    def step(params, carry, x):
        h = form.hidden(carry)
        zx = form.project(params, x.astype(h.dtype))
        new = form.gates(form.gate_params(params), carry, h @ form.kernel(params), zx)
        return new, form.hidden(new)

    return step


class Cell(NamedTuple):
    """A recurrent cell.

    The driver needs four things: ``init``, ``initial_carry``, ``step`` and ``output_size``; the
    rest have defaults (build a cell of your own with :func:`recurrax.custom_cell`).

    Attributes:
      name: the constructor's name (``"rnn"``, ``"lstm"``, ``"gru"``, ...).
      hidden_size: H, the size of the state ``h``.
      output_size: size of the per-step output ``y``.
      init: ``init(key, input_size) -> params``, a nested dict of arrays named after the paper's symbols.
      initial_carry: ``initial_carry(batch_shape=(), dtype=float32) -> carry``, the zero state.
      step: ``step(params, carry, x) -> (carry, y)`` for one example; the ``lax.scan`` body signature.
      input_size: ``input_size(params) -> D``, read off the params, so that ``unroll`` rejects
        inputs of the wrong width before any work; None: not checked.
      param_count: ``param_count(input_size, biases=None) -> int``; see :func:`param_count`.
        None: counted from the shapes of ``init``'s params.
      recurrent_matrices: ``recurrent_matrices(params) -> {name: (H, H) array}``, the state-to-state
        matrices (one per gate block), for spectral diagnostics; None: the cell has none.
      linear: a :class:`LinearForm` for linear recurrences (runs in parallel over time), else None.
      projected: a :class:`ProjectedForm` for gated cells whose input projection can be hoisted out
        of the time loop (the fused path), else None.
      selective: a :class:`SelectiveForm` for selective state spaces (the fused selective scan and,
        with a scalar decay per head, the chunked state-space-dual form), else None.
      recurrence_params: names of the top-level params that parameterise the recurrence itself
        (e.g. ``("nu_log", "theta_log")``); SSM papers train them with their own learning rate and
        no weight decay (see :func:`recurrax.optim.recurrence_param_labels`).
    """

    name: str
    hidden_size: int
    output_size: int
    init: Callable[[Key, int], Params]
    initial_carry: Callable[..., Carry]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    input_size: Callable[[Params], int] | None = None
    param_count: Callable[..., int] | None = None
    recurrent_matrices: Callable[[Params], dict[str, Array]] | None = None
    linear: LinearForm | None = None
    projected: ProjectedForm | None = None
    recurrence_params: tuple[str, ...] = ()
    selective: SelectiveForm | None = None


def param_count(cell: Cell, input_size: int, biases: BiasConvention = None) -> int:
    """Exact number of trainable scalars of ``cell`` for inputs of size ``input_size``.

    Two bias conventions are quoted in the literature for gated cells, and they differ by one bias
    vector per gate block:

    * ``biases="one"`` — one bias vector per gate block (Keras, the textbooks): ``G*H`` biases;
    * ``biases="two"`` — separate input and recurrent biases (cuDNN, PyTorch): ``2*G*H`` biases.

    With ``biases=None`` (default) the count is that of the params this library builds, which equals
    ``sum(leaf.size for leaf in tree_leaves(cell.init(key, input_size)))``; each cell's docstring
    gives its formula.

    Example:
      >>> recurrax.param_count(recurrax.lstm(128), 64)               # 4H(D+H) + 4H
      98816
      >>> recurrax.param_count(recurrax.lstm(128), 64, biases="two") # PyTorch's nn.LSTM count
      99328
    """
    check_choice("biases", biases, (None, "one", "two"))
    if cell.param_count is not None:
        return cell.param_count(input_size, biases)
    if biases is not None:
        raise ValueError(
            f"biases must be None for {cell.name}, which does not define its bias convention "
            f"(no param_count); got {biases!r}"
        )
    shapes = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


DRIVER_NEEDS = {
    "init": "init(key, input_size) -> params",
    "initial_carry": "initial_carry(batch_shape=(), dtype=float32) -> carry",
    "step": "step(params, carry, x) -> (carry, y)",
}


def check_cell(cell, name: str = "cell") -> None:
    """Rejects a value that is not a usable :class:`Cell`, naming the missing piece."""
    if not isinstance(cell, Cell):
        raise TypeError(f"{name} must be a recurrax.Cell; got {type(cell).__name__}")
    for field, signature in DRIVER_NEEDS.items():
        value = getattr(cell, field)
        if not callable(value):
            raise TypeError(
                f"{name}.{field} must be a function {signature}; got {value!r} "
                "(recurrax.custom_cell builds a cell from the pieces it needs)"
            )
    if isinstance(cell.output_size, bool) or not isinstance(cell.output_size, int):
        raise TypeError(f"{name}.output_size must be an int; got {cell.output_size!r}")
    for field in ("input_size", "param_count", "recurrent_matrices"):
        value = getattr(cell, field)
        if value is not None and not callable(value):
            raise TypeError(f"{name}.{field} must be a function or None; got {value!r}")


def gated_param_count(
    gates: int, hidden_size: int, input_size: int, own_biases: int, biases: BiasConvention
) -> int:
    """``G*H*(D+H)`` weights plus biases: ``own_biases`` (the cell's own), ``G*H`` or ``2*G*H``."""
    weights = gates * hidden_size * (input_size + hidden_size)
    bias = {None: own_biases, "one": gates * hidden_size, "two": 2 * gates * hidden_size}[biases]
    return weights + bias


def zeros_carry(state_type: type, fields: tuple[str, ...], hidden_size: int):
    """Builds ``initial_carry(batch_shape=(), dtype=float32)`` returning ``state_type`` of zeros."""

    def initial_carry(batch_shape: tuple[int, ...] = (), dtype=jnp.float32):
        shape = (*tuple(batch_shape), hidden_size)
        return state_type(**{f: jnp.zeros(shape, dtype) for f in fields})

    return initial_carry


def split_blocks(w: Array, names: str) -> dict[str, Array]:
    """Splits a packed ``(..., G*H)`` array into its ``G`` gate blocks keyed by gate name."""
    return dict(zip(names, jnp.split(w, len(names), axis=-1), strict=True))


def complex_dtype(dtype) -> jnp.dtype:
    """The complex dtype of a state whose real counterpart is ``dtype``: float64 and complex128
    give complex128, anything else (float32, bfloat16, complex64) complex64."""
    wide = jnp.dtype(dtype) in (jnp.dtype(jnp.float64), jnp.dtype(jnp.complex128))
    return jnp.dtype(jnp.complex128 if wide else jnp.complex64)


def real_dtype(dtype) -> jnp.dtype:
    """float64 for complex128 / float64 states, float32 otherwise: the dtype the maths runs in."""
    return jnp.dtype(jnp.float64 if complex_dtype(dtype) == jnp.complex128 else jnp.float32)


def computed_once(tree):
    """``tree`` unchanged, but computed once instead of inside every element it is broadcast to.

    XLA fuses a small elementwise computation into each consumer, so coefficients of shape
    ``(N,)`` (a complex exponential is an exp, a sine and a cosine) broadcast to ``(T, N)`` are
    recomputed ``T`` times; on a CPU that cost the LRU's forward pass more than its recurrence.
    XLA:CPU drops ``optimization_barrier``, but it evaluates a conditional on its own. The
    predicate is always true (``v == v`` fails only for NaN), so the zeros branch never runs;
    XLA cannot prove it, and keeps the conditional. Under a ``vmap`` that batches the tree the
    conditional becomes a select: the values are the same, only the fusion returns.
    """
    leaf = jax.tree.leaves(tree)[0].ravel()[0]
    always = (leaf == leaf) | jnp.isnan(leaf)
    return jax.lax.cond(always, lambda t: t, lambda t: jax.tree.map(jnp.zeros_like, t), tree)
