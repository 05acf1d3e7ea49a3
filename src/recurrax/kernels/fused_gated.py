r"""The fused path of gated cells: a forward loop that keeps only the carries, and a backward pass
in blocks that carries only the state gradient and forms the weight gradients as large products.

For a cell with a :class:`recurrax.cells.ProjectedForm` (``rnn``, ``lstm``, ``gru``), over a
time-major batch (``T`` steps, ``B`` examples, already in processing order), with ``v`` the real
(valid) steps and ``s`` the segment starts:

.. math::

    \tilde c_t = s_t \,?\, c^{\mathrm{reset}} : c_{t-1}, \qquad
    a_t = \mathrm{hidden}(\tilde c_t)\, W_h, \qquad
    z_t = \mathrm{project}(x_t), \qquad
    c_t = v_t \,?\, \mathrm{gates}(\tilde c_t, a_t, z_t) : \tilde c_t.

**Forward.** One loop over the steps, keeping nothing for the backward pass but the carries
:math:`c_t` (which the outputs need anyway). The input projection stays in the loop: on a CPU a
small product per step is cheaper than writing a ``(T, B, GH)`` array and reading it back.

**Backward** (a custom VJP), over blocks of ``block`` steps in reverse. For each block:

1. every :math:`\tilde c_t` is known from the saved carries, so :math:`a = \mathrm{hidden}(\tilde c)
   W_h` and :math:`z` are recomputed for the whole block as two ``(block·B, ·) @ (·, GH)`` products;
2. the loop over the block's steps carries only the state gradient; each step re-evaluates its
   gates from those products and pulls back through them (elementwise work that XLA fuses):

.. math::

    (\bar p_t, \bar c^{\,\mathrm{g}}_t, \bar a_t, \bar z_t)
        = \mathrm{vjp}_{\mathrm{gates}}(\bar c_t), \qquad
    \bar{\tilde c}_t = \bar c^{\,\mathrm{g}}_t + \mathrm{hidden}^\top(\bar a_t W_h^\top),
    \qquad
    \bar c_{t-1} = s_t \,?\, 0 : \bar{\tilde c}_t, \qquad
    \bar c^{\mathrm{reset}} \mathrel{{+}{=}} s_t \,?\, \bar{\tilde c}_t : 0;

3. the block's weight gradients are block-sized products,
   :math:`\bar W_h \mathrel{{+}{=}} \sum_t \mathrm{hidden}(\tilde c_t)^\top \bar a_t`, and those of
   ``project`` (e.g. :math:`\bar W_x \mathrel{{+}{=}} \sum_t x_t^\top \bar z_t`) come from its VJP
   over the block. The input gradient is skipped when the inputs are not differentiated.

Reverse-mode autodiff of the step loop (``method="step"``) instead stores the activations of every
step and adds a small outer product into each weight gradient at every step. Measured on a 2-core
CPU, both cost more than the arithmetic; the figures are in ``BENCHMARKS.md``
(``experiments/benchmark.py``). Blocks keep the buffers the loops touch small (``block·B·GH``
floats) while the block products stay large enough to run near the machine's matmul rate.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from recurrax.array_types import Array, Carry, Params
from recurrax.cells.base import ProjectedForm
from recurrax.kernels.time_loop import from_chunks, is_known, pad_time, to_chunks, tree_where

DEFAULT_BLOCK = 32
"""Steps per backward block (fastest of 16, 32, 64, 128 for the LSTM at B=16, T=1024, H=128 on the
2-core CPU the benchmarks ran on)."""


def fused_unroll(
    form: ProjectedForm,
    params: Params,
    xs: Array,
    valid: Array | None,
    starts: Array | None,
    carry0: Carry,
    reset_carry: Carry,
    *,
    unroll: int = 1,
    chunk: int | None = None,
    block: int = DEFAULT_BLOCK,
    return_carries: bool = False,
):
    """Runs a gated cell over a time-major batch in processing order.

    Args:
      form: the cell's :class:`ProjectedForm`.
      params: the cell's params.
      xs: ``(T, B, D)`` inputs, already in the carry's dtype.
      valid: ``(T, B)`` booleans, the real steps; None when every step is real.
      starts: ``(T, B)`` booleans, the steps before which the carry is reset; None for none.
      carry0: the carry before the first step; ``reset_carry``: the carry resets return to. Both
        with ``(B, ...)`` leaves.
      unroll: the ``lax.scan`` unroll factor of the loops over steps.
      chunk: gradient checkpointing over chunks of this many steps (None: off): only the carries
        at chunk boundaries are kept, and each chunk is run again in the backward pass.
      block: steps per block of the backward pass (see the module docstring).
      return_carries: also return the carry after every step.

    Returns:
      ``(final_carry, ys, carries)``: ``ys`` is ``(T, B, H)``, the hidden state after each step
      and zero on steps that are not valid; ``carries`` has ``(T, B, ...)`` leaves, or is None
      without ``return_carries``.
    """

    def run(carry, inputs):  # blocked inputs: (blocks, block, B, ...)
        xs, valid, starts = inputs
        ys, final, carries = _recur(
            form, unroll, return_carries, params, xs, carry, reset_carry, valid, starts
        )
        return final, (ys, carries)

    T, B = xs.shape[:2]
    if chunk is not None:
        # remat=k keeps the carries every k steps, as on every path: blocks tile the chunk.
        block = max(d for d in range(1, min(block, chunk) + 1) if chunk % d == 0)
    size = block if chunk is None else chunk
    if not (is_known(T) and T % size == 0) and valid is None:
        valid = jnp.ones((T, B), bool)
    # Padding steps are not valid and start nothing: they keep the carry and output zeros.
    inputs, _ = pad_time((xs, valid, starts), size)
    if chunk is None:
        final, (ys, carries) = run(carry0, to_chunks(inputs, block))
        ys, carries = from_chunks((ys, carries), T)
        return final, ys, carries
    chunks = jax.tree.map(
        lambda a: a.reshape((a.shape[0], chunk // block, block, *a.shape[2:])),
        to_chunks(inputs, chunk),
    )
    final, out = jax.lax.scan(jax.checkpoint(run), carry0, chunks)
    ys, carries = from_chunks(jax.tree.map(from_chunks, out), T)
    return final, ys, carries


def _map_steps(fn):
    """``fn`` of one example mapped over leading (step, batch) axes."""
    return jax.vmap(jax.vmap(fn))


def _tree_add(a, b):
    return jax.tree.map(jnp.add, a, b)


def _step(form, valid, gate_params, carry_in, hW, zx):
    """One step after the reset and the recurrent product: gates, then keep invalid examples."""
    new = jax.vmap(form.gates, in_axes=(None, 0, 0, 0))(gate_params, carry_in, hW, zx)
    return new if valid is None else tree_where(valid, new, carry_in)


def _forward(form, unroll, params, xs, carry0, reset_carry, valid, starts):
    """The carries ``(N, block, B, ...)`` of blocked inputs ``xs (N, block, B, D)``.

    One loop over all ``N·block`` steps: the blocks only serve the backward pass, and a loop
    nested in a loop costs a CPU more per step.
    """
    kernel = form.kernel(params)
    gate_params = form.gate_params(params)

    def step(carry, inputs):
        x_t, valid_t, start_t = inputs
        carry_in = tree_where(start_t, reset_carry, carry)
        hW = jax.vmap(form.hidden)(carry_in) @ kernel
        zx_t = jax.vmap(partial(form.project, params))(x_t)
        out = _step(form, valid_t, gate_params, carry_in, hW, zx_t)
        return out, out

    inputs = jax.tree.map(from_chunks, (xs, valid, starts))
    _, carries = jax.lax.scan(step, carry0, inputs, unroll=unroll)
    return to_chunks(carries, xs.shape[1])


def _outputs(form, keep_carries, carries, valid):
    """``(ys, final, carries or None)`` from the carries ``(N, block, B, ...)`` of every step."""
    final = jax.tree.map(lambda a: a[-1, -1], carries)
    ys = jax.vmap(_map_steps(form.hidden))(carries)
    if valid is not None:
        ys = jnp.where(valid[..., None], ys, jnp.zeros_like(ys))
    return ys, final, carries if keep_carries else None


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _recur(form, unroll, keep_carries, params, xs, carry0, reset_carry, valid, starts):
    """``(ys, final, carries)`` of blocked inputs: the outputs ``(N, block, B, H)``, the final
    carry and, with ``keep_carries``, the carry after every step (else None)."""
    carries = _forward(form, unroll, params, xs, carry0, reset_carry, valid, starts)
    return _outputs(form, keep_carries, carries, valid)


def _is_primal(leaf):
    return isinstance(leaf, CustomVJPPrimal)


def _recur_fwd(form, unroll, keep_carries, *args):
    # (symbolic zeros: the inputs come wrapped, saying which ones are being differentiated)
    wants_g_xs = any(p.perturbed for p in jax.tree.leaves(args[1], is_leaf=_is_primal))
    args = jax.tree.map(lambda p: p.value, args, is_leaf=_is_primal)
    carries = _forward(form, unroll, *args)
    # When the inputs are not differentiated (e.g. a first layer), their gradient is skipped;
    # the flag travels as the residuals' structure ((None,) or ()), which is static.
    valid = args[4]
    outputs = _outputs(form, keep_carries, carries, valid)
    return outputs, (*args, carries, (None,) if wants_g_xs else ())


def _recur_bwd(form, unroll, keep_carries, residuals, g_outputs):
    params, xs, carry0, reset_carry, valid, starts, carries, wants_g_xs = residuals
    g_outputs = jax.tree.map(
        lambda g: jnp.zeros(g.shape, g.dtype) if isinstance(g, SymbolicZero) else g,
        g_outputs,
        is_leaf=lambda g: isinstance(g, SymbolicZero),
    )
    # The outputs are a linear function of the carries: their cotangent is one of the carries.
    _, pull_outputs = jax.vjp(lambda cs: _outputs(form, keep_carries, cs, valid), carries)
    (g_carries,) = pull_outputs(g_outputs)
    kernel = form.kernel(params)
    kernel_t = kernel.T
    gate_params = form.gate_params(params)
    zeros = partial(jax.tree.map, jnp.zeros_like)
    # The carry before each block: carry0, then the last carry of every block but the last.
    before = jax.tree.map(lambda c0, cs: jnp.concatenate([c0[None], cs[:-1, -1]]), carry0, carries)

    def linearise(carry_in, hW, zx_t, valid_t):
        """The pullback of one step's gates."""
        return jax.vjp(partial(_step, form, valid_t), gate_params, carry_in, hW, zx_t)[1]

    def step(acc, inputs):
        g, g_gate_params, g_reset = acc
        carry_in, hW, zx_t, valid_t, start_t, g_out = inputs
        g = _tree_add(g, g_out)
        g_params_t, g_in, g_hW, g_zx = linearise(carry_in, hW, zx_t, valid_t)(g)
        _, pull_hidden = jax.vjp(jax.vmap(form.hidden), carry_in)
        g_in = _tree_add(g_in, pull_hidden(g_hW @ kernel_t)[0])
        if start_t is not None:
            none = zeros(g_in)
            g_reset = _tree_add(g_reset, tree_where(start_t, g_in, none))
            g_in = tree_where(start_t, none, g_in)
        # Cells whose gates read hW + zx (rnn, lstm) get one cotangent for both: stack it once.
        return (g_in, _tree_add(g_gate_params, g_params_t), g_reset), (
            g_hW,
            None if g_zx is g_hW else g_zx,
        )

    def block(acc, inputs):
        g, g_params, g_reset = acc
        xs, carries, prev, valid, starts, g_out = inputs
        carries_in = jax.tree.map(lambda p, cs: jnp.concatenate([p[None], cs[:-1]]), prev, carries)
        if starts is not None:
            carries_in = tree_where(
                starts, jax.tree.map(lambda r: r[None], reset_carry), carries_in
            )
        hidden = _map_steps(form.hidden)(carries_in)
        hWs = hidden @ kernel  # the block's recurrent products, recomputed at once

        def block_inputs(params, xs):  # what the block's steps read
            return _map_steps(partial(form.project, params))(xs), form.gate_params(params)

        if wants_g_xs:
            (zx, _), pull_inputs = jax.vjp(block_inputs, params, xs)
        else:
            (zx, _), pull_params = jax.vjp(partial(block_inputs, xs=xs), params)

            def pull_inputs(g):
                return (*pull_params(g), None)

        # Each step re-evaluates its gates from the block's products and pulls back through
        # them, reading only the carry, hW and zx slices. Evaluating every step's pullback for
        # the whole block beforehand would leave a dozen residual slices for each step to read,
        # which costs more on a CPU than the elementwise recomputation.
        (g, g_gate_params, g_reset), (g_hWs, g_zx) = jax.lax.scan(
            step,
            (g, zeros(gate_params), g_reset),
            (carries_in, hWs, zx, valid, starts, g_out),
            reverse=True,
            unroll=unroll,
        )
        g_block, g_xs = pull_inputs((g_hWs if g_zx is None else g_zx, g_gate_params))
        # The kernel's gradient for the whole block as one product.
        g_kernel = jnp.einsum("tbh,tbg->hg", hidden, g_hWs).astype(kernel.dtype)
        (g_block_kernel,) = jax.vjp(form.kernel, params)[1](g_kernel)
        g_params = _tree_add(g_params, _tree_add(g_block, g_block_kernel))
        return (g, g_params, g_reset), g_xs

    init = (zeros(carry0), zeros(params), zeros(reset_carry))
    (g_carry0, g_params, g_reset), g_xs = jax.lax.scan(
        block, init, (xs, carries, before, valid, starts, g_carries), reverse=True
    )
    return g_params, g_xs, g_carry0, g_reset, None, None


_recur.defvjp(_recur_fwd, _recur_bwd, symbolic_zeros=True)
