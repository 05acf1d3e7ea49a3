r"""The minimal gated recurrences minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?").

Both drop the hidden state from the gates and the candidate, which makes them diagonal linear
recurrences :math:`h_t = a_t \odot h_{t-1} + b_t` with coefficients computed from the input alone,
so they run in parallel over time. Each comes in two forms:

* ``log_space=False`` — the plain recurrence in ordinary arithmetic, candidate
  :math:`\tilde h_t = x_t W_h + b_h`;
* ``log_space=True`` — the paper's log-space form (its "log-space" implementations): the
  candidate goes through :math:`g(v) = v + 1/2` for :math:`v \ge 0`, :math:`\sigma(v)` for
  :math:`v < 0`, so that :math:`\tilde h_t > 0` and :math:`h_t > 0`, and the recurrence is solved on
  :math:`\log h_t` (products of many gates never underflow).

``negative_transitions=True`` (ordinary arithmetic only) maps each decay :math:`a_t \in (0, 1)` to
:math:`2 a_t - 1 \in (-1, 1)`, after Grazzi et al. 2024 ("Unlocking State-Tracking in Linear RNNs
Through Negative Eigenvalues"): a diagonal linear recurrence whose decays lie in :math:`[0, 1]`
cannot solve parity, one whose decays reach :math:`-1` can.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array
from recurrax.cells.base import Cell, LinearForm, zeros_carry
from recurrax.cells.initializers import input_kernel
from recurrax.validation import check_positive_int


class MinGRUState(NamedTuple):
    """Carry of :func:`mingru`: ``h`` is ``(H,)`` (``>= 0`` with ``log_space=True``)."""

    h: Array


class MinLSTMState(NamedTuple):
    """Carry of :func:`minlstm`: ``h`` is ``(H,)`` (``>= 0`` with ``log_space=True``)."""

    h: Array


def g(v: Array) -> Array:
    """The paper's positive activation: ``v + 0.5`` for ``v >= 0``, ``sigmoid(v)`` for ``v < 0``.

    Continuous (both pieces are 0.5 at 0), increasing and positive.
    """
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


def log_g(v: Array) -> Array:
    """``log g(v)``, stable for all ``v``: ``log(v + 0.5)`` or ``log σ(v) = -softplus(-v)``."""
    # The clamp keeps the unused branch finite, so its (discarded) gradient is not NaN.
    return jnp.where(v >= 0, jnp.log(jnp.maximum(v, 0.0) + 0.5), -jax.nn.softplus(-v))


def _dense(params: dict, name: str, x: Array) -> Array:
    """``x W_name + b_name`` for one step, ``x`` ``(D,)``."""
    return x @ params[f"W_{name}"] + params[f"b_{name}"]


def _mingru_coefficients(params, x):
    """``(k, h̃)`` of minGRU for one step: the update gate's pre-activation and the candidate."""
    return _dense(params, "z", x), _dense(params, "h", x)


def _decay(s: Array, signed: bool) -> Array:
    """The decay ``σ(-s)`` in (0, 1), or with ``signed`` the decay ``2σ(-s) - 1 = tanh(-s/2)`` in
    (-1, 1) (exact at both ends, where ``2σ(-s) - 1`` would cancel)."""
    return jnp.tanh(-0.5 * s) if signed else jax.nn.sigmoid(-s)


def _mingru_ordinary(params, x, candidate, signed=False):
    k, h_tilde = _mingru_coefficients(params, x)
    # 1 - σ(k) = σ(-k): exact where z_t is close to 1 (1 - σ(k) would cancel).
    return _decay(k, signed), jax.nn.sigmoid(k) * candidate(h_tilde)


def _mingru_log(params, x):
    k, h_tilde = _mingru_coefficients(params, x)
    # log(1 - σ(k)) = -softplus(k), log σ(k) = -softplus(-k): no log of a rounded-to-0 gate.
    return -jax.nn.softplus(k), -jax.nn.softplus(-k) + log_g(h_tilde)


def _minlstm_gates(params, x):
    """``(δ, h̃)`` with ``δ = log i_t - log f_t``; the normalised gates are ``σ(-δ)`` and ``σ(δ)``.

    ``f' = f / (f + i) = 1 / (1 + i/f) = σ(log f - log i)`` and ``i' = 1 - f' = σ(log i - log f)``,
    with ``log f = -softplus(-k_f)`` and ``log i = -softplus(-k_i)``. Written this way
    ``f' + i' = 1`` holds to rounding, and no gate is a ratio of two possibly tiny numbers.
    """
    log_f = -jax.nn.softplus(-_dense(params, "f", x))
    log_i = -jax.nn.softplus(-_dense(params, "i", x))
    return log_i - log_f, _dense(params, "h", x)


def _minlstm_ordinary(params, x, candidate, signed=False):
    delta, h_tilde = _minlstm_gates(params, x)
    return _decay(delta, signed), jax.nn.sigmoid(delta) * candidate(h_tilde)


def _minlstm_log(params, x):
    delta, h_tilde = _minlstm_gates(params, x)
    # log σ(-δ) = -softplus(δ), log σ(δ) = -softplus(-δ).
    return -jax.nn.softplus(delta), -jax.nn.softplus(-delta) + log_g(h_tilde)


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; got {value!r}")


def _minimal_cell(
    name: str,
    state_type: type,
    blocks: str,
    hidden_size: int,
    log_space: bool,
    negative_transitions: bool,
    param_dtype,
    ordinary: Callable,
    log_coefficients: Callable,
) -> Cell:
    """Builds minGRU or minLSTM from its per-step coefficient functions."""
    check_positive_int("hidden_size", hidden_size)
    _check_bool("log_space", log_space)
    _check_bool("negative_transitions", negative_transitions)
    if log_space and negative_transitions:
        raise ValueError(
            "negative_transitions=True needs log_space=False: the log-space form solves the "
            "recurrence on log a_t and log h_t, which a negative decay a_t does not have"
        )
    signed = negative_transitions
    H = hidden_size
    # The candidate in the ordinary-arithmetic computations: g(h̃) in the log-space variant (so that
    # the step form computes the same recurrence as the log-space solve), h̃ otherwise.
    candidate = g if log_space else (lambda v: v)

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        keys = jax.random.split(key, len(blocks))
        params = {}
        for k, block in zip(keys, blocks, strict=True):
            params[f"W_{block}"] = input_kernel(k, "lecun", input_size, H, 1, param_dtype)
            params[f"b_{block}"] = jnp.zeros((H,), param_dtype)
        return params

    def step(params, carry, x):
        h = carry.h
        if log_space:
            # The log-space solve takes log h: a negative state is NaN there, and NaN here too, so
            # that the two forms never silently disagree (only an initial carry can be negative).
            h = jnp.where(h >= 0, h, jnp.full_like(h, jnp.nan))
        a, b = ordinary(params, x.astype(h.dtype), candidate, signed)
        h_new = a * h + b
        return state_type(h_new), h_new

    def prepare(params, xs, valid, starts, carry0, reset_carry):
        del reset_carry  # all of the state is h, which the engine resets
        # No state outside h: valid/starts are handled by the engine.
        xs = xs.astype(carry0.h.dtype)
        if log_space:
            log_a, log_b = jax.vmap(log_coefficients, in_axes=(None, 0))(params, xs)
            return log_a, log_b, ()
        a, b = jax.vmap(ordinary, in_axes=(None, 0, None, None))(params, xs, candidate, signed)
        return a, b, ()

    def finish(params, hs, aux):
        if log_space:
            hs = jnp.exp(hs)  # log 0 = -inf (a zero initial carry never updated) -> 0
        return hs, state_type(hs)

    def state(carry):
        # log of a negative entry is NaN (see step); log 0 = -inf, which the engine treats as 0.
        return jnp.log(carry.h) if log_space else carry.h

    def param_count(input_size, biases=None):
        return len(blocks) * H * (input_size + 1)

    return Cell(
        name=name,
        hidden_size=H,
        output_size=H,
        init=init,
        initial_carry=zeros_carry(state_type, ("h",), H),
        step=step,
        input_size=lambda params: params["W_h"].shape[0],
        param_count=param_count,
        recurrent_matrices=lambda params: {},
        linear=LinearForm(prepare, finish, state, log_space=log_space),
        recurrence_params=(),
    )


def mingru(
    hidden_size: int,
    *,
    log_space: bool = False,
    negative_transitions: bool = False,
    param_dtype=jnp.float32,
) -> Cell:
    r"""minGRU cell (Feng et al. 2024): a GRU whose gate and candidate see only the input.

    .. math::

        z_t = \sigma(x_t W_z + b_z), \qquad \tilde h_t = x_t W_h + b_h,

        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t, \qquad y_t = h_t.

    With ``log_space=True`` the candidate is :math:`g(\tilde h_t)` with :math:`g(v) = v + 1/2`
    (:math:`v \ge 0`), :math:`\sigma(v)` (:math:`v < 0`), and the parallel form solves the
    recurrence on :math:`\log h_t` from :math:`\log(1 - z_t) = -\mathrm{softplus}(k_t)`,
    :math:`\log z_t = -\mathrm{softplus}(-k_t)` (:math:`k_t = x_t W_z + b_z`) and :math:`\log g`
    (:class:`LinearForm` with ``log_space=True``). The step form computes the same recurrence in
    ordinary arithmetic. The state is then positive and the **initial carry must be** ``>= 0``
    (zeros, the default, is fine: :math:`\log 0 = -\infty` stands for 0). This cannot be checked
    where the carry is traced (under ``jit`` and inside the scan, i.e. always in
    :func:`recurrax.unroll`); instead a negative entry makes that unit's outputs NaN in every
    method, step included. The gradient with respect to the initial carry itself is NaN at an
    entry that is exactly 0 in the parallel methods (:math:`d \log h / dh = \infty` there; the
    step form and the gradients of the params are fine), so a learned initial carry should be
    parametrised strictly positive (e.g. through a softplus).

    Equivalence: ``log_space=True`` equals ``log_space=False`` with ``b_h + 0.5`` wherever the
    candidate :math:`x_t W_h + b_h` is non-negative (there :math:`g(v) = v + 0.5`).

    ``negative_transitions=True`` maps the decay :math:`1 - z_t \in (0, 1)` to
    :math:`2(1 - z_t) - 1 = 1 - 2 z_t \in (-1, 1)`, as Grazzi et al. 2024 ("Unlocking
    State-Tracking in Linear RNNs Through Negative Eigenvalues", ICLR 2025) do for Mamba and
    DeltaNet; the input term is unchanged:

    .. math::

        h_t = (1 - 2 z_t) \odot h_{t-1} + z_t \odot \tilde h_t
            = \tanh(-k_t / 2) \odot h_{t-1} + z_t \odot \tilde h_t.

    With decays in :math:`[0, 1]` a diagonal linear recurrence cannot solve parity; a decay near
    :math:`-1` (:math:`z_t` near 1) flips the sign of the state, which lets it. The decay is
    computed as :math:`\tanh(-k_t/2)`, exact at both ends. :math:`h_t` is then no longer an
    interpolation between :math:`h_{t-1}` and :math:`\tilde h_t`, but it stays bounded
    (:math:`|1 - 2 z_t| < 1`). Every parallel method (the ordinary-space linear scan) still
    applies; the log-space form cannot hold a negative decay, so ``log_space=True`` together with
    ``negative_transitions=True`` raises a ``ValueError``. The default ``False`` is the paper's
    cell, number for number.

    Params (D = input size, H = ``hidden_size``)::

        W_z  (D, H)  update-gate kernel, lecun normal
        b_z  (H,)    update-gate bias, zeros
        W_h  (D, H)  candidate kernel, lecun normal
        b_h  (H,)    candidate bias, zeros

    Parameter count: ``2H*(D+1)``. There is no recurrent matrix, so no recurrent bias:
    ``biases="one"`` and ``"two"`` give the same count, and ``recurrent_matrices`` is ``{}`` (the
    decay :math:`1 - z_t` depends on the input alone). ``recurrence_params`` is ``()``: there are no
    recurrence-only parameters (:math:`W_z, b_z` also scale the input).

    Shapes: one step maps an input ``(D,)`` to an output ``(H,)``; :func:`recurrax.unroll` maps
    inputs ``(B, T, D)`` to outputs ``(B, T, H)`` and a final carry ``MinGRUState(h (B, H))``.

    Example:
        >>> cell = recurrax.mingru(16, log_space=True)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> xs = jax.random.normal(jax.random.key(1), (2, 5, 8))   # (batch, time, features)
        >>> carry, ys = recurrax.unroll(cell, params, xs, method="associative")  # solves on log h
        >>> ys.shape, carry.h.shape, bool(jnp.all(ys > 0))         # the state stays positive
        ((2, 5, 16), (2, 16), True)
        >>> _, ys_step = recurrax.unroll(cell, params, xs, method="step")   # ordinary arithmetic
        >>> bool(jnp.allclose(ys, ys_step, atol=1e-5))
        True
        >>> signed = recurrax.mingru(16, negative_transitions=True)   # decays 1 - 2 z_t
        >>> _, ys = recurrax.unroll(signed, params, xs, method="associative")
        >>> _, ys_step = recurrax.unroll(signed, params, xs, method="step")
        >>> bool(jnp.allclose(ys, ys_step, atol=1e-5))
        True
    """
    return _minimal_cell(
        "mingru",
        MinGRUState,
        "zh",
        hidden_size,
        log_space,
        negative_transitions,
        param_dtype,
        _mingru_ordinary,
        _mingru_log,
    )


def minlstm(
    hidden_size: int,
    *,
    log_space: bool = False,
    negative_transitions: bool = False,
    param_dtype=jnp.float32,
) -> Cell:
    r"""minLSTM cell (Feng et al. 2024): an LSTM reduced to normalised input-only gates.

    .. math::

        f_t = \sigma(x_t W_f + b_f), \qquad i_t = \sigma(x_t W_i + b_i), \qquad
        \tilde h_t = x_t W_h + b_h,

        f'_t = \frac{f_t}{f_t + i_t}, \qquad i'_t = \frac{i_t}{f_t + i_t}, \qquad
        h_t = f'_t \odot h_{t-1} + i'_t \odot \tilde h_t, \qquad y_t = h_t.

    The normalised gates are computed as :math:`f'_t = \sigma(-\delta_t)`,
    :math:`i'_t = \sigma(\delta_t)` with :math:`\delta_t = \log i_t - \log f_t =
    \mathrm{softplus}(-k^f_t) - \mathrm{softplus}(-k^i_t)`, which is the same algebraically, sums to
    1 to rounding, and avoids dividing two gates that may both round to 0. :math:`f'_t + i'_t = 1`
    makes :math:`h_t` a convex combination, so the state stays within the range of the initial
    carry and the candidates (time-independent scale, as the paper argues).

    ``log_space=True`` works as in :func:`mingru`: the candidate is :math:`g(\tilde h_t)`, the
    parallel form solves on :math:`\log h_t` from :math:`\log f'_t = -\mathrm{softplus}(\delta_t)`,
    :math:`\log i'_t = -\mathrm{softplus}(-\delta_t)`, and the **initial carry must be** ``>= 0``
    (a negative entry gives NaN in every method; see :func:`mingru`).

    ``negative_transitions=True`` maps the decay :math:`f'_t \in (0, 1)` to
    :math:`2 f'_t - 1 = \tanh(-\delta_t / 2) \in (-1, 1)` (Grazzi et al. 2024, "Unlocking
    State-Tracking in Linear RNNs Through Negative Eigenvalues"; see :func:`mingru`), leaving the
    input term :math:`i'_t \odot \tilde h_t` unchanged:

    .. math::

        h_t = (2 f'_t - 1) \odot h_{t-1} + i'_t \odot \tilde h_t.

    A decay near :math:`-1` flips the sign of the state (what parity needs). The state is then no
    longer a convex combination (it stays bounded, :math:`|2 f'_t - 1| < 1`, but may leave the
    range of the candidates). It is computed in ordinary arithmetic by every method;
    ``log_space=True`` with ``negative_transitions=True`` raises a ``ValueError``. The default
    ``False`` is the paper's cell, number for number.

    Params (D = input size, H = ``hidden_size``)::

        W_f  (D, H)  forget-gate kernel, lecun normal
        b_f  (H,)    forget-gate bias, zeros
        W_i  (D, H)  input-gate kernel, lecun normal
        b_i  (H,)    input-gate bias, zeros
        W_h  (D, H)  candidate kernel, lecun normal
        b_h  (H,)    candidate bias, zeros

    Parameter count: ``3H*(D+1)``; ``biases="one"`` and ``"two"`` give the same count (no recurrent
    matrix, so no recurrent bias). ``recurrent_matrices`` is ``{}`` and ``recurrence_params`` is
    ``()``: the decay :math:`f'_t` depends on the input alone and no parameter is recurrence-only.

    Shapes: one step maps an input ``(D,)`` to an output ``(H,)``; :func:`recurrax.unroll` maps
    inputs ``(B, T, D)`` to outputs ``(B, T, H)`` and a final carry ``MinLSTMState(h (B, H))``.

    Example:
        >>> cell = recurrax.minlstm(16)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> xs = jax.random.normal(jax.random.key(1), (2, 5, 8))   # (batch, time, features)
        >>> lengths = jnp.array([5, 3])
        >>> carry, ys = recurrax.unroll(cell, params, xs, lengths=lengths, reverse=True)
        >>> ys.shape, carry.h.shape, bool(jnp.allclose(carry.h, ys[:, 0]))  # step 0 runs last
        ((2, 5, 16), (2, 16), True)
        >>> signed = recurrax.minlstm(16, negative_transitions=True)  # decays 2 f'_t - 1
        >>> _, ys_signed = recurrax.unroll(signed, params, xs, method="chunked", chunk_size=2)
        >>> _, ys_step = recurrax.unroll(signed, params, xs, method="step")
        >>> bool(jnp.allclose(ys_signed, ys_step, atol=1e-5))
        True
    """
    return _minimal_cell(
        "minlstm",
        MinLSTMState,
        "fih",
        hidden_size,
        log_space,
        negative_transitions,
        param_dtype,
        _minlstm_ordinary,
        _minlstm_log,
    )
