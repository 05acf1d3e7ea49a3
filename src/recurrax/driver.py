"""One driver that runs any cell over time with exact padding, mask, reset and reverse semantics.

Semantics (also in BUILD.md, "Semantics"), per example ``b`` and step ``t``:

* **lengths** — steps ``t >= lengths[b]`` are padding: the carry is frozen, the output is zero, and
  the final carry is the carry after the last real step.
* **mask** — a masked step (``mask[b, t] == False``) leaves the carry unchanged and outputs zero, as
  if the step were not in the sequence.
* **resets** — ``resets[b, t] == True`` marks the first step of a new segment (a document or episode
  boundary in a packed sequence): the carry returns to the initial carry before step ``t``'s input
  is consumed. A reset on a masked step still takes effect (the boundary is positional); the masked
  step then passes the initial carry through. Resets on padding are ignored.
* **reverse** — each sequence runs from its last real step to its first and outputs come back in the
  original order; the padding stays where it is. Segments keep their boundaries, so in reverse the
  carry is reset before the *last* step of each segment, and a packed batch gives, in both
  directions, exactly what each segment gives when run alone.
* **initial carry** — zeros by default, or a given carry (per example with a leading ``B`` axis, or
  one unbatched carry shared by all examples, e.g. a learned parameter; gradients flow into it).

The time loop is a single ``lax.scan`` (no Python loop over time), so compile time does not depend on
the sequence length. With ``remat=k`` every path runs over chunks of ``k`` steps whose insides are
recomputed in the backward pass: memory grows with ``T/k + k`` instead of ``T``. Which path runs is
decided in one place, :mod:`recurrax.paths`; the loop pieces they share are in
:mod:`recurrax.kernels.time_loop`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from recurrax.array_types import Array, Carry, Params
from recurrax.cells.base import Cell, SelectiveInputs, check_cell
from recurrax.kernels.fused_gated import fused_unroll
from recurrax.kernels.linear_scan import LOG, ORDINARY, solve
from recurrax.kernels.selective_scan import selective_scan
from recurrax.kernels.ssd import ssd_scan
from recurrax.kernels.time_loop import (
    arrange,
    at_most,
    check_semantics,
    checkpoint_chunk,
    chunked_loop,
    in_order,
    is_known,
    tree_where,
)
from recurrax.paths import SELECTIVE_SPAN, is_selective, methods, resolve
from recurrax.validation import (
    check_choice,
    check_floating,
    check_positive_int,
    check_rank,
    forward_mode_hint,
)


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = None,
    reset_carry: Carry | None = None,
    lengths: Array | None = None,
    mask: Array | None = None,
    resets: Array | None = None,
    reverse: bool = False,
    return_carries: bool = False,
    time_major: bool = False,
    unroll: int = 1,
    remat: bool | int | None = None,
    method: str | None = None,
    chunk_size: int | None = None,
):
    """Runs ``cell`` over a batch of sequences.

    Args:
      cell: a :class:`recurrax.Cell`.
      params: the cell's params, from ``cell.init``.
      xs: ``(B, T, D)`` floating inputs (``(T, B, D)`` when ``time_major``).
      initial_carry: the carry before the first step and after every reset; leaves ``(B, H)`` or
        ``(H,)`` (shared by all examples). Default: ``cell.initial_carry()`` (zeros).
      reset_carry: the carry that resets return to, when it differs from ``initial_carry`` (same
        shapes). Truncated BPTT needs it: each chunk starts from the state carried over from the
        previous chunk, while a document boundary inside the chunk returns to the zero state.
      lengths: ``(B,)`` integers in ``[0, T]``; steps at or after the length are padding. Under
        ``jit`` the values cannot be checked and are clipped to ``[0, T]``.
      mask: ``(B, T)`` booleans (``(T, B)`` when ``time_major``); False steps are skipped.
      resets: ``(B, T)`` booleans (``(T, B)`` when ``time_major``); True starts a new segment.
      reverse: run each sequence backwards over its real steps; outputs stay in input order.
      return_carries: also return the carry after every step (in input order).
      time_major: ``xs``, ``mask``, ``resets`` and the outputs have time first.
      unroll: the ``lax.scan`` unroll factor.
      remat: gradient checkpointing over chunks of time: ``None``/``False`` (off), ``True`` (chunks of
        about ``sqrt(T)`` steps) or a chunk length.
      method: the path (:mod:`recurrax.paths` lists each cell's methods and defaults).
        ``"step"`` runs ``cell.step`` in a ``lax.scan`` and differentiates it by autodiff (the
        reference path, and the only one for cells without another form). ``"fused"``: for
        ``rnn``, ``lstm``, ``gru`` the forward loop with a blocked backward pass
        (:mod:`recurrax.kernels.fused_gated`); for ``mamba`` and ``mamba2`` the fused selective
        scan (:mod:`recurrax.kernels.selective_scan`), which never stores a ``(T, E, N)`` state.
        ``"chunked"`` for ``mamba2``: the state-space-dual chunks (:mod:`recurrax.kernels.ssd`).
        Linear recurrences (a :class:`recurrax.cells.LinearForm`) run in parallel over time through
        :func:`recurrax.linear_scan`: ``"sequential"``, ``"associative"``, ``"chunked"`` or
        ``"auto"``. All methods give the same numbers. ``"fused"`` and ``"sequential"`` are
        differentiated by custom VJPs, so forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``,
        Hessian-vector products by forward-over-reverse) needs ``method="step"`` (or
        ``"associative"``/``"chunked"`` for a linear form); other methods raise a TypeError
        saying so. ``return_carries`` is not available with the selective
        cells' ``"fused"`` and ``"chunked"`` paths, which never hold every step's state.
      chunk_size: chunk length of the ``"chunked"`` methods.

    Returns:
      ``(final_carry, ys)``, or ``(final_carry, ys, carries)`` with ``return_carries``.
      ``final_carry`` leaves are ``(B, H)``, ``ys`` is ``(B, T, output_size)`` and the carries
      ``(B, T, H)`` per leaf (time first when ``time_major``).

    Dtypes: the recurrence runs in float32, or float64 when any parameter is float64, whatever
    the dtypes of the inputs and the other params: bfloat16 params and inputs are upcast, and
    ``ys``, ``final_carry`` and ``carries`` come out in float32 (complex64 for the complex
    states of ``lru`` and ``s5``; float64 / complex128 with float64 params). Cast ``ys`` for a
    bfloat16 model downstream.

    Example:
        >>> cell = recurrax.lstm(32)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> xs = jax.random.normal(jax.random.key(1), (2, 5, 8))    # (batch, time, features)
        >>> (h, c), ys = recurrax.unroll(cell, params, xs, lengths=jnp.array([5, 3]))
        >>> ys.shape, h.shape, bool(jnp.all(ys[1, 3:] == 0))      # padding outputs zeros
        ((2, 5, 32), (2, 32), True)
        >>> _, ys_rev = recurrax.unroll(cell, params, xs, reverse=True, remat=2, method="step")
        >>> ys_rev.shape
        (2, 5, 32)
    """
    check_cell(cell)
    check_floating("xs", xs)
    layout = "(time, batch, features)" if time_major else "(batch, time, features)"
    check_rank("xs", xs, 3, layout)
    xs = jnp.asarray(xs)
    if time_major:
        T, B, D = xs.shape
    else:
        B, T, D = xs.shape
    input_size = D if cell.input_size is None else cell.input_size(params)
    if D != input_size:
        raise ValueError(
            f"xs must have {input_size} features (the cell's input size) in its last axis; "
            f"got shape {xs.shape}"
        )
    check_positive_int("unroll", unroll)
    chunk = _remat_chunk(remat, T)
    if method is not None:
        check_choice("method", method, methods(cell))
    if chunk_size is not None:
        check_positive_int("chunk_size", chunk_size)
    path = resolve(cell, params, B, T, method, chunk_size, return_carries=return_carries)
    if return_carries and is_selective(cell, path.method):
        raise ValueError(
            f"return_carries is not available with method={path.method!r} for {cell.name}, which "
            "never holds every step's state; use method='step'"
        )
    # The fused path skips the per-step selects that these flags would need when they are absent.
    every_step_real, no_resets = lengths is None and mask is None, resets is None
    lengths, mask, resets = check_semantics(lengths, mask, resets, B, T, time_major)

    # The carry (and so the computation, since cells cast x to it) follows the params: float32
    # even for bfloat16 inputs, float64 when the params are float64 (gradient checks).
    carry_dtype = carry_dtype_for(params)
    template = cell.initial_carry((), carry_dtype)
    if initial_carry is None:
        initial_carry = template
    initial_carry, carry_axes = _check_initial_carry("initial_carry", initial_carry, template, B)
    if reset_carry is None:
        reset_carry, reset_axes = initial_carry, carry_axes
    else:
        reset_carry, reset_axes = _check_initial_carry("reset_carry", reset_carry, template, B)

    # The paths that run the whole batch in one loop (rather than one example under vmap).
    batch_args = (
        cell,
        params,
        xs,
        lengths,
        mask,
        resets,
        (initial_carry, carry_axes),
        (reset_carry, reset_axes),
    )
    initial, reset = batch_args[-2:]
    batch_options = dict(
        every_step_real=every_step_real,
        no_resets=no_resets,
        reverse=reverse,
        time_major=time_major,
        carry_dtype=carry_dtype,
        chunk=chunk,
    )

    def run_path():
        if is_selective(cell, path.method):
            return _run_selective(*batch_args, path=path, **batch_options)
        if path.method == "fused":
            return _run_fused(
                *batch_args, unroll=unroll, return_carries=return_carries, **batch_options
            )
        if path.method == "step":
            return _run_steps(
                *batch_args,
                time_major=time_major,
                reverse=reverse,
                unroll=unroll,
                chunk=chunk,
                return_carries=return_carries,
                # (remat pads with invalid steps)
                every_step_real=every_step_real and chunk is None,
                no_resets=no_resets,
            )
        run = partial(
            _run_linear_sequence,
            cell,
            params,
            reverse=reverse,
            method=path.method,
            chunk_size=path.chunk_size,
            unroll=unroll,
            remat_chunk=chunk,
            return_carries=return_carries,
        )
        return _over_examples(
            run, xs, lengths, mask, resets, initial, reset, time_major, return_carries
        )

    with forward_mode_hint(f"{cell.name}'s method={path.method!r}"):
        return run_path()


def _over_examples(run, xs, lengths, mask, resets, initial, reset, time_major, return_carries):
    """``run`` (one example) mapped over the batch: ``(final, ys)`` or ``(final, ys, carries)``."""
    (initial_carry, carry_axes), (reset_carry, reset_axes) = initial, reset
    time_axis = 1 if time_major else 0
    final, out = jax.vmap(
        run,
        in_axes=(time_axis, 0, time_axis, time_axis, carry_axes, reset_axes),
        out_axes=(0, time_axis),
    )(xs, lengths, mask, resets, initial_carry, reset_carry)
    if return_carries:
        ys, carries = out
        return final, ys, carries
    return final, out


def _run_steps(cell, params, xs, lengths, mask, resets, initial, reset, *, time_major, **options):
    """The step path: ``cell.step`` in a ``lax.scan``, one example under ``vmap``."""
    run = partial(_run_sequence, cell, params, **options)
    return _over_examples(
        run, xs, lengths, mask, resets, initial, reset, time_major, options["return_carries"]
    )


def carry_dtype_for(params: Params):
    """float64 when any parameter is float64, else float32: the dtype of carries and reductions."""
    wide = any(jnp.result_type(leaf) == jnp.float64 for leaf in jax.tree.leaves(params))
    return jnp.float64 if wide else jnp.float32


def check_remat(remat) -> None:
    """``remat`` must be None, False, True or a positive chunk length."""
    if remat is None or isinstance(remat, bool) or (isinstance(remat, int) and remat >= 1):
        return
    raise ValueError(f"remat must be None, False, True or a positive chunk length; got {remat!r}")


def _remat_chunk(remat: bool | int | None, T: int) -> int | None:
    check_remat(remat)
    if remat is None or remat is False:
        return None
    return checkpoint_chunk(T) if remat is True else remat


def _run_linear_sequence(
    cell,
    params,
    xs,
    length,
    mask,
    starts,
    carry0,
    reset_carry,
    *,
    reverse,
    method,
    chunk_size,
    unroll,
    remat_chunk,
    return_carries,
):
    """Runs one example of a linear recurrence in parallel over time (see :class:`LinearForm`)."""
    order, valid, starts = arrange(length, mask, starts, reverse)
    xs = in_order(order, xs)
    a, b, aux = cell.linear.prepare(params, xs, valid, starts, carry0, reset_carry)
    ring = LOG if cell.linear.log_space else ORDINARY
    h_reset, h_init = cell.linear.state(reset_carry), cell.linear.state(carry0)
    hs = solve(a, b, valid, starts, h_reset, method, chunk_size, unroll, remat_chunk, ring, h_init)
    ys, carries = cell.linear.finish(params, hs, aux)
    ys = jax.tree.map(lambda y: jnp.where(valid[:, None], y, jnp.zeros_like(y)), ys)
    final = jax.tree.map(lambda c: c[-1], carries)  # padding is processed last; it keeps the carry
    out = (ys, carries) if return_carries else ys
    return final, in_order(order, out)


def _arrange_batch(xs, lengths, mask, resets, reverse, time_major):
    """Every example's timeline at once, for the paths that run the whole batch in one loop.

    Returns ``xs (B, T, D)`` in processing order, ``valid`` and ``starts`` ``(B, T)``, and
    ``restore``, which takes ``(B, T, ...)`` leaves in processing order back to the caller's
    order and layout.
    """
    if time_major:
        xs, mask, resets = jnp.swapaxes(xs, 0, 1), mask.T, resets.T
    order, valid, starts = jax.vmap(partial(arrange, reverse=reverse))(lengths, mask, resets)
    reorder = jax.vmap(in_order) if order is not None else (lambda _order, tree: tree)

    def restore(tree):
        tree = reorder(order, tree)
        return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), tree) if time_major else tree

    return reorder(order, xs), valid, starts, restore


def _batched(carry, axes, B):
    """A carry with ``(B, ...)`` leaves: shared (unbatched) leaves are broadcast over the batch."""
    return jax.tree.map(
        lambda leaf, axis: leaf if axis == 0 else jnp.broadcast_to(leaf, (B, *leaf.shape)),
        carry,
        axes,
    )


def _run_fused(cell, params, xs, lengths, mask, resets, initial, reset, **options):
    """The fused path: the step path's numbers and program, with the fused backward pass.

    Undifferentiated (inference), the step path runs as it is, so that the fused path never
    costs more there. Differentiated, the forward rule runs :func:`_fused_batch` (a forward loop
    that keeps the carries) and its blocked backward pass; only the inputs that are
    differentiated get gradients (a first layer's inputs, for one, do not). ``options`` are
    :func:`_fused_batch`'s.
    """
    (carry0, carry_axes), (carry_r, reset_axes) = initial, reset
    step_options = {k: v for k, v in options.items() if k != "carry_dtype"}
    # (remat pads with invalid steps)
    step_options["every_step_real"] = options["every_step_real"] and options["chunk"] is None

    def stepped(params, xs, lengths, mask, resets, carry0, carry_r):
        return _run_steps(
            cell, params, xs, lengths, mask, resets, (carry0, carry_axes), (carry_r, reset_axes),
            **step_options,
        )  # fmt: skip

    def fused(params, xs, lengths, mask, resets, carry0, carry_r):
        return _fused_batch(
            cell, params, xs, lengths, mask, resets, (carry0, carry_axes), (carry_r, reset_axes),
            **options,
        )  # fmt: skip

    def forward(*args):
        wants_g_xs = any(leaf.perturbed for leaf in jax.tree.leaves(args[1], is_leaf=_is_primal))
        args = jax.tree.map(lambda leaf: leaf.value, args, is_leaf=_is_primal)
        params, xs, lengths, mask, resets, carry0, carry_r = args
        if wants_g_xs:
            out, pull = jax.vjp(
                lambda p, x, c0, cr: fused(p, x, lengths, mask, resets, c0, cr),
                params, xs, carry0, carry_r,
            )  # fmt: skip
        else:
            out, pull_no_xs = jax.vjp(
                lambda p, c0, cr: fused(p, xs, lengths, mask, resets, c0, cr),
                params, carry0, carry_r,
            )  # fmt: skip
            pull = _without_xs(pull_no_xs)
        return out, pull

    def backward(pull, g):
        g = jax.tree.map(_instantiate, g, is_leaf=lambda leaf: isinstance(leaf, SymbolicZero))
        g_params, g_xs, g_carry0, g_carry_r = pull(g)
        return g_params, g_xs, None, None, None, g_carry0, g_carry_r

    run = jax.custom_vjp(stepped)
    run.defvjp(forward, backward, symbolic_zeros=True)
    return run(params, xs, lengths, mask, resets, carry0, carry_r)


def _is_primal(leaf):
    return isinstance(leaf, CustomVJPPrimal)


def _instantiate(g):
    return jnp.zeros(g.shape, g.dtype) if isinstance(g, SymbolicZero) else g


def _without_xs(pull):
    """A pullback of ``(params, carry0, reset_carry)`` as one of ``(params, xs, ...)`` whose input
    gradient is None (not asked for); a pytree, so that it can be a residual."""
    return jax.tree_util.Partial(_pull_without_xs, pull)


def _pull_without_xs(pull, g):
    g_params, g_carry0, g_carry_r = pull(g)
    return g_params, None, g_carry0, g_carry_r


def _fused_batch(
    cell,
    params,
    xs,
    lengths,
    mask,
    resets,
    initial,
    reset,
    *,
    carry_dtype,
    every_step_real,
    no_resets,
    reverse,
    time_major,
    unroll,
    chunk,
    return_carries,
):
    """The whole batch through :func:`recurrax.kernels.fused_gated.fused_unroll` (time-major
    inside): the forward rule of :func:`_run_fused`."""
    xs, valid, starts, restore = _arrange_batch(xs, lengths, mask, resets, reverse, time_major)
    B = xs.shape[0]
    final, ys, carries = fused_unroll(
        cell.projected,
        params,
        jnp.swapaxes(xs, 0, 1).astype(carry_dtype),
        None if every_step_real else valid.T,
        None if no_resets else starts.T,
        _batched(*initial, B),
        _batched(*reset, B),
        unroll=unroll,
        chunk=chunk,
        return_carries=return_carries,
    )
    batch_major = partial(jax.tree.map, lambda a: jnp.swapaxes(a, 0, 1))
    ys = restore(batch_major(ys))
    if return_carries:
        return final, ys, restore(batch_major(carries))
    return final, ys


def _run_selective(
    cell,
    params,
    xs,
    lengths,
    mask,
    resets,
    initial,
    reset,
    *,
    path,
    chunk,
    carry_dtype,
    every_step_real,
    no_resets,
    reverse,
    time_major,
):
    """The whole batch through the fused selective scan or the state-space-dual chunks.

    Over spans of ``S`` steps (``remat=k`` when given, else :data:`recurrax.paths.SELECTIVE_SPAN`),
    each checkpointed: the cell's :class:`SelectiveForm` computes the span's ``(Δ, A, B, C, u)``
    in parallel (per example), the kernel runs the state space over the batch, and ``finish``
    forms the outputs and the carry that enters the next span. Only the carry at span boundaries
    is stored for the backward pass, so the block's temporaries (projections, convolution, gates)
    stay the size of one span rather than of the sequence: on a CPU, writing fewer fresh pages
    is much of the speed.
    """
    form = cell.selective
    xs, valid, starts, restore = _arrange_batch(xs, lengths, mask, resets, reverse, time_major)
    B, T = xs.shape[:2]
    carry0, reset_carry = _batched(*initial, B), _batched(*reset, B)
    h_reset = jax.vmap(form.state)(reset_carry)
    if path.method == "fused":
        kernel = selective_scan
    else:
        options = {} if path.chunk_size is None else {"chunk": path.chunk_size}
        kernel = partial(ssd_scan, heads=form.heads, **options)
    span = max(at_most(chunk or SELECTIVE_SPAN, T), 1)
    # (spans pad with steps that are not valid)
    all_valid = every_step_real and is_known(T) and T % span == 0

    def run_span(carry, span_inputs):  # time-major span inputs: (S, B, ...)
        xs, valid, starts = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), span_inputs)
        inputs, aux = jax.vmap(
            form.prepare,
            in_axes=(None, 0, 0, 0, 0, 0),
            out_axes=(SelectiveInputs(0, None, 0, 0, 0), 0),
        )(params, xs, valid, starts, carry, reset_carry)
        h0 = jax.vmap(form.state)(carry)
        flags = (None if all_valid else valid, None if no_resets else starts)
        ys, h = kernel(inputs, *flags, h0, h_reset)
        outputs, carry = jax.vmap(form.finish, in_axes=(None, 0, 0, 0))(params, ys, h, aux)
        outputs = jnp.where(valid[..., None], outputs, jnp.zeros_like(outputs))
        return carry, jnp.swapaxes(outputs, 0, 1)

    per_step = jax.tree.map(
        lambda a: jnp.swapaxes(a, 0, 1), (xs.astype(carry_dtype), valid, starts)
    )
    if is_known(T) and span == T and chunk is None:
        final, outputs = run_span(carry0, per_step)
    else:
        final, outputs = chunked_loop(run_span, carry0, per_step, span)
    return final, restore(jnp.swapaxes(outputs, 0, 1))


def _check_initial_carry(name, initial_carry, template, batch):
    """Validates a given carry against the cell's template; returns it and its vmap axes."""
    given = jax.tree.structure(initial_carry)
    expected = jax.tree.structure(template)
    if given != expected:
        raise ValueError(f"{name} must have the cell's carry structure {expected}; got {given}")

    def axis(leaf, ref):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            raise TypeError(
                f"{name} must hold floating or complex arrays; got dtype {jnp.result_type(leaf)}"
            )
        shape = jnp.shape(leaf)
        if shape == ref.shape:
            return None
        if shape == (batch, *ref.shape):
            return 0
        raise ValueError(
            f"{name} leaves must have shape {ref.shape} or {(batch, *ref.shape)}; got shape {shape}"
        )

    axes = jax.tree.map(axis, initial_carry, template)
    cast = jax.tree.map(
        lambda leaf, ref: jnp.asarray(leaf).astype(ref.dtype), initial_carry, template
    )
    return cast, axes


def _run_sequence(
    cell,
    params,
    xs,
    length,
    mask,
    starts,
    h0,
    reset_carry,
    *,
    reverse,
    unroll,
    chunk,
    return_carries,
    every_step_real=False,
    no_resets=False,
):
    """Runs one example: ``xs`` (T, D), ``length`` (), ``mask``/``starts`` (T,), ``h0`` the carry
    before the first step and ``reset_carry`` the carry that resets return to. ``every_step_real``
    and ``no_resets`` say (statically) that no step is padding or masked, and that no step starts
    a segment."""
    order, valid, starts = arrange(length, mask, starts, reverse)
    xs = in_order(order, xs)

    def step(carry, inputs):
        x, is_valid, is_start = inputs
        if not no_resets:
            carry = tree_where(is_start, reset_carry, carry)
        new_carry, y = cell.step(params, carry, x)
        if every_step_real:  # (no selects: they cost small steps as much as the cell itself)
            return new_carry, ((y, new_carry) if return_carries else y)
        new_carry = tree_where(is_valid, new_carry, carry)
        y = jax.tree.map(lambda a: jnp.where(is_valid, a, jnp.zeros_like(a)), y)
        return new_carry, ((y, new_carry) if return_carries else y)

    if chunk is None:
        final, out = jax.lax.scan(step, h0, (xs, valid, starts), unroll=unroll)
    else:
        # Padding steps are invalid (valid=False), so they leave the carry alone.
        run_chunk = partial(jax.lax.scan, step, unroll=unroll)
        final, out = chunked_loop(run_chunk, h0, (xs, valid, starts), chunk)
    return final, in_order(order, out)
