"""The fused selective scan: values against a Python-loop reference under every semantic (masks,
padding, resets, groups, lengths that are not a whole number of checkpoint blocks), its custom VJP
against autodiff of a ``lax.scan`` reference, Mamba's selective form against stepping the cell,
the memory of its training step, and bfloat16 inputs over a long sequence."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from conftest import assert_trees_close
from recurrax.cells.base import SelectiveInputs
from recurrax.cells.mamba import MambaState, mamba
from recurrax.kernels.selective_scan import selective_scan

B, T, E, N = 3, 11, 4, 3


def make_inputs(seed, batch=B, time=T, E=E, N=N, groups=1, dtype=jnp.float64, batched_A=False):
    r"""Random coefficients in the ranges a selective state space sees: ``Δ = softplus(·) > 0``
    ``(B, T, E)``, ``A < 0`` ``(E, N)`` (or one per example), ``B``/``C`` ``(B, T, G, N)``, ``u``
    ``(B, T, E)``, and two different states ``h_init``/``h_reset`` ``(B, E, N)``."""
    ks = jax.random.split(jax.random.key(seed), 7)
    A_shape = (batch, E, N) if batched_A else (E, N)
    inputs = SelectiveInputs(
        delta=jax.nn.softplus(jax.random.normal(ks[0], (batch, time, E), dtype)),
        A=-jnp.exp(jax.random.normal(ks[1], A_shape, dtype)),
        B=jax.random.normal(ks[2], (batch, time, groups, N), dtype),
        C=jax.random.normal(ks[3], (batch, time, groups, N), dtype),
        u=jax.random.normal(ks[4], (batch, time, E), dtype),
    )
    h_init = jax.random.normal(ks[5], (batch, E, N), dtype)
    h_reset = jax.random.normal(ks[6], (batch, E, N), dtype)
    return inputs, h_init, h_reset


def flags(seed, p, shape=(B, T)):
    return np.random.default_rng(seed).random(shape) < p


def padding(lengths, time=T):
    """``valid`` of sequences padded after ``lengths`` steps."""
    return np.arange(time)[None, :] < np.asarray(lengths)[:, None]


# --- references --------------------------------------------------------------------------------


def np_selective_scan(inputs, valid, starts, h_init, h_reset):
    r"""Python loop over examples and steps, float64, written from the semantics:

    .. code-block:: text

        h_in = h_reset if starts[t] else h_{t-1}          (h_{-1} = h_init)
        h_new[e, n] = exp(Δ[t, e] A[e, n]) h_in[e, n] + Δ[t, e] u[t, e] B[t, e // (E/G), n]
        h_t = h_new if valid[t] else h_in
        y[t, e] = sum_n h_t[e, n] C[t, e // (E/G), n] if valid[t] else 0
    """
    delta, A, Bm, Cm, u = (np.asarray(a, np.float64) for a in inputs)
    batch, time, channels = delta.shape
    per_group = channels // Bm.shape[2]
    valid = np.ones((batch, time), bool) if valid is None else np.asarray(valid)
    starts = np.zeros((batch, time), bool) if starts is None else np.asarray(starts)
    ys = np.zeros((batch, time, channels))
    finals = []
    for b in range(batch):
        A_b = A[b] if A.ndim == 3 else A
        h = np.array(h_init[b], np.float64)
        for t in range(time):
            h_in = np.array(h_reset[b], np.float64) if starts[b, t] else h
            if not valid[b, t]:
                h = h_in
                continue
            h = np.empty_like(h_in)
            for e in range(channels):
                g = e // per_group
                for n in range(A_b.shape[1]):
                    decay = np.exp(delta[b, t, e] * A_b[e, n])
                    h[e, n] = decay * h_in[e, n] + delta[b, t, e] * u[b, t, e] * Bm[b, t, g, n]
                ys[b, t, e] = h[e] @ Cm[b, t, g]
        finals.append(h)
    return ys, np.stack(finals)


def scan_reference(inputs, valid, starts, h_init, h_reset):
    """The same semantics as a ``lax.scan`` over steps (vmapped over examples), for autodiff."""
    delta, A, Bm, Cm, u = inputs
    batch, time, channels = delta.shape
    G = Bm.shape[2]
    valid = jnp.ones((batch, time), bool) if valid is None else jnp.asarray(valid)
    starts = jnp.zeros((batch, time), bool) if starts is None else jnp.asarray(starts)

    def one(delta, A, Bm, Cm, u, valid, starts, h_init, h_reset):
        def step(h, x):
            d, b, c, x_u, v, s = x
            h_in = jnp.where(s, h_reset, h)
            b = jnp.repeat(b, channels // G, axis=0)  # (G, N) -> (E, N)
            c = jnp.repeat(c, channels // G, axis=0)
            h_new = jnp.exp(d[:, None] * A) * h_in + (d * x_u)[:, None] * b
            h = jnp.where(v, h_new, h_in)
            return h, jnp.where(v, jnp.sum(h * c, axis=-1), jnp.zeros_like(d))

        h, ys = jax.lax.scan(step, h_init, (delta, Bm, Cm, u, valid, starts))
        return ys, h

    A_axis = 0 if A.ndim == 3 else None
    return jax.vmap(one, in_axes=(0, A_axis, 0, 0, 0, 0, 0, 0, 0))(
        delta, A, Bm, Cm, u, valid, starts, h_init, h_reset
    )


@partial(jax.jit, static_argnames=("checkpoint",))
def kernel(inputs, valid, starts, h_init, h_reset, checkpoint):
    return selective_scan(inputs, valid, starts, h_init, h_reset, checkpoint=checkpoint)


reference = jax.jit(scan_reference)


# --- values ------------------------------------------------------------------------------------

# Steps 0, 4 and 5 start segments in every example: a reset at step 0, one that begins a
# checkpoint block (k = 4) and one inside a block (k = 3 and 4); the rest are random.
STARTS = flags(2, 0.2) | np.isin(np.arange(T), [0, 4, 5])[None, :]
SEMANTICS = {
    "plain": (None, None),
    "mask": (flags(1, 0.7), None),
    "padding": (padding([11, 6, 0]), None),
    "resets": (None, STARTS),
    "mask+padding+resets": (flags(1, 0.7) & padding([11, 7, 2]), STARTS & padding([11, 7, 2])),
}


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize("groups", [1, 2])
def test_equals_python_loop_reference(semantics, groups):
    """``ys (B, T, E)`` and ``h_final (B, E, N)`` of the kernel equal the Python loop for
    checkpoint blocks of 1, 3, 4 (T = 11 is a whole number of none of them but 1) and one longer
    than the sequence."""
    valid, starts = SEMANTICS[semantics]
    inputs, h_init, h_reset = make_inputs(0, groups=groups)
    expected = np_selective_scan(inputs, valid, starts, h_init, h_reset)
    for k in (1, 3, 4, 16):
        got = kernel(inputs, valid, starts, h_init, h_reset, checkpoint=k)
        assert got[0].dtype == got[1].dtype == jnp.float64
        assert_trees_close(got, expected, rtol=1e-12, atol=1e-12)


def test_one_decay_per_example_and_empty_sequence():
    """``A (B, E, N)`` (as a vmapped ``prepare`` may give it) and ``T = 0``."""
    inputs, h_init, h_reset = make_inputs(1, groups=2, batched_A=True)
    valid, starts = SEMANTICS["mask+padding+resets"]
    expected = np_selective_scan(inputs, valid, starts, h_init, h_reset)
    got = kernel(inputs, valid, starts, h_init, h_reset, checkpoint=4)
    assert_trees_close(got, expected, rtol=1e-12, atol=1e-12)

    empty = jax.tree.map(lambda a: a if a.ndim == 2 else a[:, :0], make_inputs(1)[0])
    ys, h = selective_scan(empty, None, None, h_init, h_reset)
    assert ys.shape == (B, 0, E)
    np.testing.assert_array_equal(h, h_init)


def test_bad_shapes_raise_naming_the_argument():
    inputs, h_init, h_reset = make_inputs(0, groups=2)
    with pytest.raises(ValueError, match="delta"):
        selective_scan(inputs._replace(delta=inputs.delta[:, :-1]), None, None, h_init, h_reset)
    with pytest.raises(ValueError, match="h_reset"):
        selective_scan(inputs, None, None, h_init, h_reset[:, :, :-1])
    with pytest.raises(ValueError, match="valid"):
        selective_scan(inputs, jnp.ones((B, T + 1), bool), None, h_init, h_reset)
    three = make_inputs(0, groups=3)[0]  # 3 groups of E = 4 channels
    with pytest.raises(ValueError, match="groups"):
        selective_scan(three, None, None, h_init, h_reset)
    with pytest.raises(ValueError, match="checkpoint"):
        selective_scan(inputs, None, None, h_init, h_reset, checkpoint=0)


# --- gradients ---------------------------------------------------------------------------------


def weighted_loss(run, seed=7):
    """``sum(sin(ys) ⊙ w) + sum(h_final² ⊙ w')``: touches every output and the final state
    nonlinearly, so that no cotangent is zero or uniform."""
    ks = jax.random.split(jax.random.key(seed), 2)

    def loss(*args):
        ys, h = run(*args)
        w = jax.random.normal(ks[0], ys.shape, ys.dtype)
        w_h = jax.random.normal(ks[1], h.shape, h.dtype)
        return jnp.sum(jnp.sin(ys) * w) + jnp.sum(h * h * w_h)

    return loss


def test_check_grads_float64():
    """Reverse-mode gradients of every input against finite differences, on a tiny case with a
    mask, resets (one inside a block) and a partial last block."""
    inputs, h_init, h_reset = make_inputs(3, batch=2, time=5, E=2, N=2, groups=2)
    valid = np.array([[1, 1, 0, 1, 1], [1, 1, 1, 1, 0]], bool)
    starts = np.array([[0, 0, 0, 1, 0], [1, 0, 1, 0, 0]], bool)

    def run(delta, A, Bm, Cm, u, h_init, h_reset):
        inputs = SelectiveInputs(delta, A, Bm, Cm, u)
        return selective_scan(inputs, valid, starts, h_init, h_reset, checkpoint=2)

    check_grads(jax.jit(weighted_loss(run)), (*inputs, h_init, h_reset), order=1, modes=["rev"])


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_custom_vjp_equals_autodiff_of_scan(semantics):
    """Values and the gradients w.r.t. Δ, A, B, C, u, h_init and h_reset equal autodiff of the
    ``lax.scan`` reference (G = 2, checkpoint blocks of 4 over T = 11)."""
    valid, starts = SEMANTICS[semantics]
    inputs, h_init, h_reset = make_inputs(4, groups=2)

    def gradients(run):
        loss = weighted_loss(lambda *args: run(SelectiveInputs(*args[:5]), *args[5:]))
        return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(7))))(*inputs, h_init, h_reset)

    got = gradients(lambda x, h0, hr: selective_scan(x, valid, starts, h0, hr, checkpoint=4))
    expected = gradients(lambda x, h0, hr: scan_reference(x, valid, starts, h0, hr))
    assert_trees_close(got, expected, rtol=1e-10, atol=1e-12)
    if starts is None:  # h_reset is never read
        assert not np.any(got[1][6])
    else:
        assert np.all(np.any(got[1][6] != 0, axis=(1, 2)) == np.any(starts, axis=1))


def test_invalid_steps_get_no_gradient():
    """Δ, u, B and C of masked and padding steps do not reach the outputs."""
    valid, starts = SEMANTICS["mask+padding+resets"]
    inputs, h_init, h_reset = make_inputs(5, groups=2)
    loss = weighted_loss(
        lambda *args: selective_scan(
            SelectiveInputs(*args), valid, starts, h_init, h_reset, checkpoint=4
        )
    )
    grads = jax.jit(jax.grad(loss, argnums=(0, 2, 3, 4)))(*inputs)
    for g in grads:
        assert not np.any(np.asarray(g)[~valid])


# --- mamba's selective form ----------------------------------------------------------------------


def step_loop(cell, params, xs, valid, starts, carry0, reset_carry):
    """The driver's step loop for one example: ``xs (T, D)``, ``valid``/``starts`` ``(T,)``."""

    def step(carry, inputs):
        x, v, s = inputs
        carry_in = jax.tree.map(lambda r, c: jnp.where(s, r, c), reset_carry, carry)
        new, y = cell.step(params, carry_in, x)
        carry = jax.tree.map(lambda n, c: jnp.where(v, n, c), new, carry_in)
        return carry, jnp.where(v, y, jnp.zeros_like(y))

    final, ys = jax.lax.scan(step, carry0, (xs, valid, starts))
    return ys, final


def selective_path(cell, params, xs, valid, starts, carry0, reset_carry):
    """``prepare`` (per example) -> the fused selective scan (batched) -> ``finish`` (per
    example), as the driver runs it; outputs at invalid steps are zero."""
    form = cell.selective
    inputs, aux = jax.vmap(
        form.prepare,
        in_axes=(None, 0, 0, 0, 0, 0),
        out_axes=(SelectiveInputs(0, None, 0, 0, 0), 0),
    )(params, xs, valid, starts, carry0, reset_carry)
    h0, h_reset = jax.vmap(form.state)(carry0), jax.vmap(form.state)(reset_carry)
    ys, h = selective_scan(inputs, valid, starts, h0, h_reset, checkpoint=4)
    outputs, final = jax.vmap(form.finish, in_axes=(None, 0, 0, 0))(params, ys, h, aux)
    return jnp.where(valid[..., None], outputs, jnp.zeros_like(outputs)), final


@pytest.mark.parametrize("d_conv", [3, 1])
def test_mamba_selective_form_equals_step(d_conv):
    """Outputs, the final carry (state and convolution window) and the gradients w.r.t. every
    param and the initial and reset carries of prepare -> selective scan -> finish equal stepping
    ``cell.step`` (float64), with a mask, padding and resets."""
    cell = mamba(3, d_state=2, d_conv=d_conv)
    params = jax.tree.map(
        lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), cell.output_size)
    )
    xs = jax.random.normal(jax.random.key(1), (B, T, 3), jnp.float64)
    valid = jnp.asarray(flags(1, 0.7) & padding([11, 7, 2]))
    starts = jnp.asarray(STARTS & padding([11, 7, 2]))

    def carry(seed):
        template = cell.initial_carry((B,), jnp.float64)
        ks = jax.random.split(jax.random.key(seed), 2)
        return MambaState(
            *[jax.random.normal(k, a.shape, a.dtype) for k, a in zip(ks, template, strict=True)]
        )

    carry0, reset_carry = carry(2), carry(3)
    run_steps = jax.vmap(partial(step_loop, cell), in_axes=(None, 0, 0, 0, 0, 0))

    def loss(run):
        def f(params, carry0, reset_carry):
            ys, final = run(params, xs, valid, starts, carry0, reset_carry)
            return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in final), (ys, final)

        grad = jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)
        return jax.jit(grad)(params, carry0, reset_carry)

    got = loss(partial(selective_path, cell))
    expected = loss(run_steps)
    assert_trees_close(got, expected, rtol=1e-10, atol=1e-12)


# --- memory and low precision -----------------------------------------------------------------------


def test_training_step_memory_below_one_full_state_array():
    """The compiled training step (forward and custom VJP) at ``(B, T, E, N) = (2, 2048, 32, 16)``
    needs less temporary memory than one ``(B, T, E, N)`` float32 array: no per-step state is
    stored, forwards or backwards."""
    batch, time, channels, states = 2, 2048, 32, 16
    inputs, h_init, h_reset = jax.eval_shape(
        partial(make_inputs, 0, batch, time, channels, states, dtype=jnp.float32)
    )

    def loss(inputs, h_init, h_reset):
        ys, h = selective_scan(inputs, None, None, h_init, h_reset)
        return jnp.sum(ys**2) + jnp.sum(h**2)

    train = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    compiled = train.lower(inputs, h_init, h_reset).compile()
    full_states = batch * time * channels * states * 4
    assert compiled.memory_analysis().temp_size_in_bytes < full_states


def test_bfloat16_long_sequence_finite_outputs_and_gradients():
    """bfloat16 inputs over 4096 steps run in float32 (the dtype of ``h_init``) and give finite
    outputs and gradients."""
    inputs, h_init, h_reset = make_inputs(6, batch=1, time=4096, E=2, N=2, dtype=jnp.float32)
    inputs = jax.tree.map(lambda a: a.astype(jnp.bfloat16), inputs)
    valid = jnp.asarray(padding([4000], 4096))

    def loss(inputs, h_init):
        ys, h = selective_scan(inputs, valid, None, h_init, h_reset)
        return jnp.sum(ys**2) + jnp.sum(h**2), (ys, h)

    (value, (ys, h)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        inputs, h_init
    )
    assert ys.dtype == h.dtype == jnp.float32
    assert all(
        g.dtype == a.dtype
        for g, a in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(inputs), strict=True)
    )
    for leaf in [value, ys, h, *jax.tree.leaves(grads)]:
        assert np.all(np.isfinite(np.asarray(leaf, np.float32)))
