r"""Schedules of the teacher probability for scheduled sampling (Bengio et al. 2015).

Scheduled sampling ("Scheduled Sampling for Sequence Prediction with Recurrent Neural Networks")
feeds the decoder, at every step and for every example, the gold previous token with probability
:math:`\epsilon_i` and the model's own previous prediction otherwise; :math:`\epsilon_i` decays
over the training steps :math:`i` from (near) 1, teacher forcing, towards the regime of inference.
The paper's three decays (its Section 2.4 and Figure 2):

.. math::

    \text{linear:}\quad \epsilon_i = \max(\epsilon_{\min}, k - c\, i), \qquad
    \text{exponential:}\quad \epsilon_i = k^i\ (0 < k < 1), \qquad
    \text{inverse sigmoid:}\quad \epsilon_i = \frac{k}{k + \exp(i / k)}\ (k \ge 1).

Each schedule is a pure function of the step (a Python int or a traced integer array), so it can
run inside a jitted train step; it returns a float32 scalar that
``EncoderDecoder.apply(..., teacher_probability=...)`` takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from recurrax.array_types import Array

KINDS = ("constant", "linear", "exponential", "inverse_sigmoid")


def _step(step) -> Array:
    """The step as a float32 scalar (a traced integer stays traced)."""
    step = jnp.asarray(step)
    if step.ndim != 0:
        raise ValueError(f"step must be a scalar; got shape {step.shape}")
    return step.astype(jnp.float32)


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    return float(value)


def linear_decay(step, *, k: float = 1.0, c: float, minimum: float = 0.0) -> Array:
    r"""Linear decay :math:`\epsilon_i = \min(1, \max(\epsilon_{\min}, k - c\, i))`.

    ``k`` is the offset, ``c`` the slope and ``minimum`` (:math:`\epsilon_{\min}`) the least
    amount of truth the model is given. With ``k <= 1`` (the paper's setting) the ``min(1, ·)``
    never acts; ``k > 1`` keeps full teacher forcing for the first ``(k - 1) / c`` steps.

    Args:
      step: the training step ``i`` (an int or an integer scalar array, traced or not).
      k: the offset, a real number.
      c: the slope, ``>= 0``.
      minimum: :math:`\epsilon_{\min}` in ``[0, 1]``.

    Returns:
      A float32 scalar in ``[minimum, 1]``.

    Example:
        >>> float(recurrax.scheduled_sampling.linear_decay(100, k=1.0, c=0.002, minimum=0.1))
        0.800000011920929
    """
    k, c, minimum = _check_real("k", k), _check_real("c", c), _check_real("minimum", minimum)
    if c < 0:
        raise ValueError(f"c must be >= 0 (a decay); got {c!r}")
    if not 0.0 <= minimum <= 1.0:
        raise ValueError(f"minimum must lie in [0, 1]; got {minimum!r}")
    i = _step(step)
    value = jnp.maximum(jnp.float32(minimum), jnp.float32(k) - jnp.float32(c) * i)
    return jnp.minimum(value, jnp.float32(1.0))


def exponential_decay(step, *, k: float) -> Array:
    r"""Exponential decay :math:`\epsilon_i = k^i` with :math:`0 < k < 1`.

    Args:
      step: the training step ``i`` (an int or an integer scalar array, traced or not).
      k: the base, in ``(0, 1)``.

    Returns:
      A float32 scalar in ``(0, 1]`` (underflowing to 0 for very large ``i``).

    Example:
        >>> float(recurrax.scheduled_sampling.exponential_decay(2, k=0.5))
        0.25
    """
    k = _check_real("k", k)
    if not 0.0 < k < 1.0:
        raise ValueError(f"k must lie in (0, 1) for the exponential decay; got {k!r}")
    # exp(i log k) with log k taken in double precision: k rounded to float32 first would put a
    # relative error of i·2⁻²⁴ on k^i.
    return jnp.exp(_step(step) * jnp.float32(math.log(k)))


def inverse_sigmoid_decay(step, *, k: float) -> Array:
    r"""Inverse sigmoid decay :math:`\epsilon_i = k / (k + \exp(i / k))` with :math:`k \ge 1`.

    It stays near :math:`k / (k + 1)` for :math:`i \ll k \log k`, falls through 1/2 at
    :math:`i = k \log k` and tends to 0; a larger ``k`` decays later and more slowly.

    Args:
      step: the training step ``i`` (an int or an integer scalar array, traced or not).
      k: the scale, ``>= 1``.

    Returns:
      A float32 scalar in ``(0, k / (k + 1)]``.

    Example:
        >>> round(float(recurrax.scheduled_sampling.inverse_sigmoid_decay(0, k=9.0)), 6)
        0.9
    """
    k = _check_real("k", k)
    if not k >= 1.0:
        raise ValueError(f"k must be >= 1 for the inverse sigmoid decay; got {k!r}")
    kk = jnp.float32(k)
    # k / (k + exp(i/k)) = sigmoid(log k - i/k): never inf/inf, however large i is.
    return jax.nn.sigmoid(jnp.log(kk) - _step(step) / kk)


def teacher_schedule(kind: str, **params) -> Callable[[Array], Array]:
    r"""A schedule ``step -> teacher probability`` of the given kind, validated now.

    Kinds and their parameters:

    * ``"constant"``: ``probability`` in ``[0, 1]`` at every step;
    * ``"linear"``: either the paper's ``k``, ``c`` and ``minimum`` (see :func:`linear_decay`;
      ``k`` defaults to 1 and ``minimum`` to 0), or ``start``, ``end`` and ``num_steps``: from
      ``start`` at step 0 down to ``end`` at step ``num_steps`` and ``end`` after it (that is
      ``k = start``, ``c = (start - end) / num_steps``, ``minimum = end``);
    * ``"exponential"``: ``k`` in ``(0, 1)`` (see :func:`exponential_decay`);
    * ``"inverse_sigmoid"``: ``k >= 1`` (see :func:`inverse_sigmoid_decay`).

    Args:
      kind: one of ``"constant"``, ``"linear"``, ``"exponential"``, ``"inverse_sigmoid"``.
      **params: the kind's parameters, as above.

    Returns:
      A pure, jit-compatible function of the step returning a float32 scalar.

    Example:
        >>> schedule = recurrax.scheduled_sampling.teacher_schedule(
        ...     "linear", start=1.0, end=0.5, num_steps=100)
        >>> [round(float(schedule(i)), 3) for i in (0, 50, 100, 200)]
        [1.0, 0.75, 0.5, 0.5]
        >>> float(jax.jit(recurrax.scheduled_sampling.teacher_schedule("exponential", k=0.5))(3))
        0.125
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    required_params = {"constant": {"probability"}, "exponential": {"k"}, "inverse_sigmoid": {"k"}}
    given = set(params)
    if kind == "linear":
        paper, span = {"k", "c", "minimum"}, {"start", "end", "num_steps"}
        if given and given <= span:
            if given != span:
                raise ValueError(
                    f"params must give all of start, end and num_steps for the linear schedule; "
                    f"got {sorted(given)}"
                )
            start, end = _check_real("start", params["start"]), _check_real("end", params["end"])
            num_steps = params["num_steps"]
            if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
                raise ValueError(f"num_steps must be a positive integer; got {num_steps!r}")
            if not 0.0 <= end <= start <= 1.0:
                raise ValueError(
                    f"start and end must satisfy 0 <= end <= start <= 1; got start={start!r}, "
                    f"end={end!r}"
                )
            options = {"k": start, "c": (start - end) / num_steps, "minimum": end}
        elif given <= paper and "c" in given:
            options = dict(params)
        else:
            raise ValueError(
                "params must be k, c (and optionally minimum) or start, end and num_steps for "
                f"the linear schedule; got {sorted(given)}"
            )
        linear_decay(0, **options)  # validates now
        return lambda step: linear_decay(step, **options)
    required = required_params[kind]
    if given != required:
        raise ValueError(
            f"params must be exactly {sorted(required)} for the {kind} schedule; got {sorted(given)}"
        )
    if kind == "constant":
        p = _check_real("probability", params["probability"])
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability must lie in [0, 1]; got {p!r}")
        return lambda step: jnp.broadcast_to(jnp.float32(p), _step(step).shape)
    decay = exponential_decay if kind == "exponential" else inverse_sigmoid_decay
    decay(0, **params)  # validates now
    return lambda step: decay(step, **params)
