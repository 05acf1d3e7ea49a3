"""Mamba-2 and the chunked state-space-dual kernel: ssd_scan against a numpy loop (chunks that do
and do not divide T, spans, masks, resets, groups), the cell's selective form against stepping it
(values, final carry, gradients), the block against a numpy loop over its equations, float64
gradient checks, bfloat16 at T=4096, layout and count, initialisation, errors."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from conftest import assert_trees_close
from recurrax.cells.base import SelectiveInputs
from recurrax.cells.mamba2 import Mamba2State, mamba2
from recurrax.kernels.ssd import ssd_scan
from recurrax.kernels.time_loop import tree_where

# --- the kernel against a numpy loop ---------------------------------------------------------------


def np_ssd(inputs, valid, starts, h_init, h_reset):
    r"""The step loop of :func:`ssd_scan`'s docstring, per example, in float64:

    h_in = starts[t] ? h_reset : h_{t-1};  h_new = exp(Δ_t A) ⊙ h_in + (Δ_t u_t) ⊗ B_t[g(e)];
    h_t = valid[t] ? h_new : h_in;  y_t = valid[t] ? h_t C_t[g(e)] : 0.   Shapes as ssd_scan's.
    """
    delta, A, Bm, Cm, u = (np.asarray(a, np.float64) for a in inputs)
    Bsz, T, E = u.shape
    G = Bm.shape[2]
    ys, finals = np.zeros((Bsz, T, E)), np.zeros_like(np.asarray(h_init, np.float64))
    for b in range(Bsz):
        h = np.array(h_init[b], np.float64)
        for t in range(T):
            if starts[b, t]:
                h = np.array(h_reset[b], np.float64)
            if not valid[b, t]:
                continue
            for e in range(E):
                g = e // (E // G)
                decay, step = np.exp(delta[b, t, e] * A[e]), delta[b, t, e] * u[b, t, e]
                h[e] = decay * h[e] + step * Bm[b, t, g]
                ys[b, t, e] = h[e] @ Cm[b, t, g]
        finals[b] = h
    return ys, finals


def random_inputs(seed, Bsz, T, H, P, N, G, dtype=np.float64):
    """Δ constant within each head (softplus of a normal, ~0.2-2), A = -(0.5..2) per head."""
    rng = np.random.default_rng(seed)
    E = H * P
    dt = np.log1p(np.exp(rng.normal(size=(Bsz, T, H)) - 0.5))
    A = -np.repeat(rng.uniform(0.5, 2.0, size=H), P)[:, None] * np.ones((1, N))
    inputs = SelectiveInputs(
        delta=np.repeat(dt, P, axis=-1).astype(dtype),
        A=A.astype(dtype),
        B=rng.normal(size=(Bsz, T, G, N)).astype(dtype),
        C=rng.normal(size=(Bsz, T, G, N)).astype(dtype),
        u=rng.normal(size=(Bsz, T, E)).astype(dtype),
    )
    h_init = rng.normal(size=(Bsz, E, N)).astype(dtype)
    h_reset = rng.normal(size=(Bsz, E, N)).astype(dtype)  # differs from h_init
    return inputs, h_init, h_reset


T_REF = 11
# Example 0: a reset at step 0 and one inside a chunk; example 1: masked steps and padding at the
# end (not valid) with a reset on a masked step; example 2: resets at steps 3 and 6, the first
# steps of chunks of 3, and no masking.
VALID = np.ones((3, T_REF), bool)
VALID[1, [2, 5, 6]] = False
VALID[1, 8:] = False
STARTS = np.zeros((3, T_REF), bool)
STARTS[0, [0, 5]] = True
STARTS[1, 5] = True  # a masked step: the state still returns to h_reset
STARTS[2, [3, 6]] = True

ssd = jax.jit(ssd_scan, static_argnames=("heads", "chunk", "span"))


@pytest.mark.parametrize("G", [1, 2])
@pytest.mark.parametrize(
    "chunk,span",
    [(1, None), (3, None), (4, None), (16, None), (3, 6), (2, 5)],  # 4 and 16 do not divide 11
)
def test_ssd_scan_equals_numpy_loop_with_masks_resets_and_groups(G, chunk, span):
    """ys (B, T, E) and h_final (B, E, N) for H=4 heads of P=2, N=3, against the loop; spans of
    whole chunks (span rounds up to a multiple of chunk) give the same numbers."""
    inputs, h_init, h_reset = random_inputs(0, 3, T_REF, 4, 2, 3, G)
    expected = np_ssd(inputs, VALID, STARTS, h_init, h_reset)
    got = ssd(inputs, VALID, STARTS, h_init, h_reset, heads=4, chunk=chunk, span=span)
    assert_trees_close(got, expected, rtol=1e-10, atol=1e-10)
    assert np.abs(expected[0]).max() > 0.1  # not a comparison of zeros


def test_ssd_scan_without_flags_and_with_per_example_A():
    """``valid``/``starts`` None mean every step valid and no resets; ``A`` may carry the batch
    axis (as a vmapped ``prepare`` returns it)."""
    inputs, h_init, h_reset = random_inputs(1, 2, 9, 2, 3, 2, 1)
    ones, zeros = np.ones((2, 9), bool), np.zeros((2, 9), bool)
    expected = np_ssd(inputs, ones, zeros, h_init, h_reset)
    got = ssd(inputs, None, None, h_init, h_reset, heads=2, chunk=4)
    assert_trees_close(got, expected, rtol=1e-10, atol=1e-10)
    batched_A = inputs._replace(A=np.broadcast_to(inputs.A, (2, *inputs.A.shape)))
    got = ssd(batched_A, ones, zeros, h_init, h_reset, heads=2, chunk=4)
    assert_trees_close(got, expected, rtol=1e-10, atol=1e-10)


def test_ssd_scan_long_decays_do_not_overflow():
    """Large Δ|A| (total log decay of a chunk far below -100): exp(c_t - c_s) is taken only for
    s <= t, so neither the outputs nor the gradients hold inf or NaN."""
    inputs, h_init, h_reset = random_inputs(2, 1, 40, 2, 2, 2, 1, dtype=np.float32)
    inputs = inputs._replace(delta=inputs.delta * 30.0)  # log decays of -10 to -100 per step

    def loss(inputs):
        ys, h = ssd_scan(inputs, None, None, h_init, h_reset, heads=2, chunk=16)
        return jnp.sum(ys**2) + jnp.sum(h)

    value, grads = jax.jit(jax.value_and_grad(loss))(inputs)
    assert np.isfinite(float(value))
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(g)))


def test_check_grads_float64_through_ssd_scan():
    """Reverse-mode gradients of (ys, h_final) with respect to every input, with a reset inside a
    chunk, masked steps and h_init != h_reset. Δ and A are per head and repeated over the head's
    channels (the kernel reads a head's first channel), G = 1, H = 2, P = 2, N = 2, T = 7."""
    Bsz, T, H, P, N = 2, 7, 2, 2, 2
    inputs, h_init, h_reset = random_inputs(3, Bsz, T, H, P, N, 1)
    dt_h = inputs.delta.reshape(Bsz, T, H, P)[..., 0]
    a_h = inputs.A.reshape(H, P, N)[:, 0, 0]
    valid = np.array([[1, 1, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]], bool)
    starts = np.array([[0, 0, 0, 0, 1, 0, 0], [1, 0, 0, 1, 0, 0, 0]], bool)

    @jax.jit
    def f(dt_h, a_h, Bm, Cm, u, h_init, h_reset):
        delta = jnp.repeat(dt_h, P, axis=-1)
        A = jnp.broadcast_to(jnp.repeat(a_h, P)[:, None], (H * P, N))
        ys, h = ssd_scan(
            SelectiveInputs(delta, A, Bm, Cm, u), valid, starts, h_init, h_reset, heads=H, chunk=3
        )
        return jnp.sum(jnp.sin(ys)) + jnp.sum(h**2)

    args = (dt_h, a_h, inputs.B, inputs.C, inputs.u, h_init, h_reset)
    check_grads(f, args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_bfloat16_inputs_with_float32_state_at_t4096():
    """bfloat16 coefficients run in the float32 of the state: finite outputs and gradients, float32
    results, bfloat16 input gradients."""
    inputs, h_init, h_reset = random_inputs(4, 1, 4096, 2, 2, 4, 1, dtype=np.float32)
    inputs = jax.tree.map(lambda a: jnp.asarray(a, jnp.bfloat16), inputs)

    def loss(inputs):
        ys, h = ssd_scan(inputs, None, None, h_init, h_reset, heads=2)
        return jnp.mean(ys**2) + jnp.mean(h**2), (ys, h)

    (value, (ys, h)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(inputs)
    assert ys.dtype == h.dtype == jnp.float32
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(ys)))
    for g in jax.tree.leaves(grads):
        assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(g, np.float32)))


# --- the cell --------------------------------------------------------------------------------------

CONFIG = dict(features=4, d_state=3, d_conv=3, expand=2, headdim=2, ngroups=2)  # E=8, H=4, G=2
CELL = mamba2(**CONFIG)


def silu(a):
    return a / (1.0 + np.exp(-a))


@partial(jax.jit, static_argnums=0)
def init64(cell, key):
    return jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(key, cell.output_size))


def random_carry(cell, seed, batch):
    template = cell.initial_carry((batch,), jnp.float64)
    keys = jax.random.split(jax.random.key(seed), 2)
    return Mamba2State(
        *[
            0.5 * jax.random.normal(k, leaf.shape, jnp.float64)
            for k, leaf in zip(keys, template, strict=True)
        ]
    )


def stepping(cell, params, xs, valid, starts, carry0, reset_carry):
    """The driver's semantics around ``cell.step`` (one example per row of the batch): a start
    returns the carry to ``reset_carry``; an invalid step keeps the carry and outputs zeros."""

    def one(xs, valid, starts, carry0, reset_carry):
        def body(carry, inp):
            x, v, s = inp
            carry = tree_where(s, reset_carry, carry)
            new, y = cell.step(params, carry, x)
            return tree_where(v, new, carry), jnp.where(v, y, jnp.zeros_like(y))

        carry, ys = jax.lax.scan(body, carry0, (xs, valid, starts))
        return ys, carry

    return jax.vmap(one)(xs, valid, starts, carry0, reset_carry)


def selective(cell, params, xs, valid, starts, carry0, reset_carry, chunk):
    """``prepare`` (per example) -> ``ssd_scan`` (the batch) -> ``finish`` (per example)."""
    form = cell.selective
    inputs, aux = jax.vmap(
        form.prepare,
        in_axes=(None, 0, 0, 0, 0, 0),
        out_axes=(SelectiveInputs(0, None, 0, 0, 0), 0),
    )(params, xs, valid, starts, carry0, reset_carry)
    ys, h = ssd_scan(
        inputs, valid, starts, form.state(carry0), form.state(reset_carry), heads=form.heads,
        chunk=chunk,
    )  # fmt: skip
    outputs, carry = jax.vmap(form.finish, in_axes=(None, 0, 0, 0))(params, ys, h, aux)
    return jnp.where(valid[..., None], outputs, jnp.zeros_like(outputs)), carry


@pytest.mark.parametrize("d_conv", [3, 1])
def test_selective_form_equals_stepping_values_carry_and_gradients(d_conv):
    """outputs (B, T, D), the final carry (h (H, P, N) and the conv window (K-1, E+2GN)) and the
    gradients of a loss of both with respect to every param, under masks, resets (one on a masked
    step, one at step 0), padding, an initial carry and a different reset carry."""
    cell = CELL if d_conv == 3 else mamba2(**{**CONFIG, "d_conv": 1})
    params = init64(cell, jax.random.key(0))
    params["dt_bias"] = params["dt_bias"] + 1.0  # Δ ~ 1: the state carries across steps
    xs = jax.random.normal(jax.random.key(1), (3, T_REF, 4), jnp.float64)
    valid, starts = jnp.asarray(VALID), jnp.asarray(STARTS)
    carry0, reset_carry = random_carry(cell, 2, 3), random_carry(cell, 3, 3)
    args = (params, xs, valid, starts, carry0, reset_carry)

    def loss(run, params):
        ys, carry = run(params, *args[1:])
        return jnp.sum(ys**2) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(carry))

    step_run = partial(stepping, cell)
    sel_run = partial(selective, cell, chunk=4)  # 4 does not divide 11
    expected, got = jax.jit(step_run)(*args), jax.jit(sel_run)(*args)
    assert_trees_close(got, expected, rtol=1e-10, atol=1e-10)
    assert np.abs(np.asarray(expected[0])).max() > 0.1
    grads_expected = jax.jit(jax.grad(partial(loss, step_run)))(params)
    grads_got = jax.jit(jax.grad(partial(loss, sel_run)))(params)
    assert_trees_close(grads_got, grads_expected, rtol=1e-9, atol=1e-9)


def test_check_grads_float64_through_the_selective_form():
    """Gradients with respect to the params and both carries (the conv window's rows enter the
    convolution through the moved rows and the starting-window table) by finite differences."""
    cell = mamba2(2, d_state=2, d_conv=3, expand=2, headdim=2)  # E = 4, H = 2
    params = init64(cell, jax.random.key(0))
    params["dt_bias"] = params["dt_bias"] + 1.5
    xs = jax.random.normal(jax.random.key(1), (2, 6, 2), jnp.float64)
    valid = jnp.array([[1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 1, 0]], bool)
    starts = jnp.array([[0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]], bool)

    @jax.jit
    def loss(params, carry0, reset_carry):
        ys, carry = selective(cell, params, xs, valid, starts, carry0, reset_carry, chunk=4)
        return jnp.sum(ys**2) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(carry))

    args = (params, random_carry(cell, 2, 2), random_carry(cell, 3, 2))
    check_grads(loss, args, order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def np_mamba2(p, xs, *, E, H, P, G, N, K, h0, conv0):
    """One example, Python loop over time, written from the docstring's equations."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    h = np.array(h0, np.float64)  # (H, P, N)
    history = list(np.asarray(conv0, np.float64))  # ξ_{-K+1}, ..., ξ_{-1}
    outs = []
    for x in np.asarray(xs, np.float64):
        zxd = x @ p["W_in"]
        z, xi, dt_raw = zxd[:E], zxd[E : 2 * E + 2 * G * N], zxd[2 * E + 2 * G * N :]
        history.append(xi)
        pre = p["conv_b"] + sum(p["conv_w"][k] * history[len(history) - K + k] for k in range(K))
        vbc = silu(pre)
        v, Bm, Cm = vbc[:E], vbc[E : E + G * N].reshape(G, N), vbc[E + G * N :].reshape(G, N)
        dt = np.log1p(np.exp(dt_raw + p["dt_bias"]))
        A = -np.exp(p["A_log"])
        y = np.zeros(E)
        for head in range(H):
            g = head // (H // G)
            vh = v[head * P : (head + 1) * P]
            h[head] = np.exp(dt[head] * A[head]) * h[head] + dt[head] * np.outer(vh, Bm[g])
            y[head * P : (head + 1) * P] = h[head] @ Cm[g] + p["D"][head] * vh
        gated = (y * silu(z)).reshape(G, E // G)
        normed = gated / np.sqrt(np.mean(gated**2, axis=1, keepdims=True) + 1e-5)
        outs.append((normed.reshape(E) * p["norm_w"]) @ p["W_out"])
    return np.stack(outs), h, np.stack(history[len(history) - (K - 1) :])


def test_step_equals_numpy_block():
    """The block's equations (in-projection, conv, Δ, per-head scalar decay, skip, group-wise gated
    RMSNorm, out-projection) in a numpy loop against stepping ``cell.step``, from a non-zero carry."""
    params = init64(CELL, jax.random.key(5))
    params["norm_w"] = jnp.linspace(0.5, 1.5, 8, dtype=jnp.float64)  # every param matters
    params["D"] = jnp.array([0.5, 1.0, -1.0, 2.0], jnp.float64)
    xs = jax.random.normal(jax.random.key(6), (1, 7, 4), jnp.float64)
    carry0 = random_carry(CELL, 7, 1)
    ones, zeros = jnp.ones((1, 7), bool), jnp.zeros((1, 7), bool)
    ys, carry = jax.jit(partial(stepping, CELL))(params, xs, ones, zeros, carry0, carry0)
    ref_y, ref_h, ref_conv = np_mamba2(
        params, xs[0], E=8, H=4, P=2, G=2, N=3, K=3, h0=carry0.h[0], conv0=carry0.conv[0]
    )
    np.testing.assert_allclose(ys[0], ref_y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(carry.h[0], ref_h, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(carry.conv[0], ref_conv, rtol=1e-12, atol=1e-12)


def test_bfloat16_inputs_at_t4096_through_the_selective_form():
    """bfloat16 inputs, float32 carry: finite outputs and gradients at T = 4096."""
    cell = mamba2(4, d_state=4, d_conv=4, headdim=4)  # E = 8, H = 2
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (1, 4096, 4), jnp.float32).astype(jnp.bfloat16)
    valid, starts = jnp.ones((1, 4096), bool), jnp.zeros((1, 4096), bool).at[0, 2000].set(True)
    carry0 = cell.initial_carry((1,))

    def loss(params, xs):
        ys, carry = selective(cell, params, xs, valid, starts, carry0, carry0, chunk=32)
        return jnp.mean(ys.astype(jnp.float32) ** 2), (ys, carry)

    (value, (ys, carry)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        params, xs
    )
    assert carry.h.dtype == carry.conv.dtype == jnp.float32
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(ys, np.float32)))
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(g, np.float32)))
    assert grads[1].dtype == jnp.bfloat16


# --- layout, counts, initialisation, errors -------------------------------------------------------


def test_layout_param_count_and_carry(key):
    cell = mamba2(4, d_state=3, d_conv=3, headdim=2, ngroups=2)  # E=8, H=4, G=2, E+2GN=20
    params = cell.init(key, 4)
    assert {k: v.shape for k, v in params.items()} == {
        "W_in": (4, 2 * 8 + 12 + 4),
        "conv_w": (3, 20),
        "conv_b": (20,),
        "dt_bias": (4,),
        "A_log": (4,),
        "D": (4,),
        "norm_w": (8,),
        "W_out": (8, 4),
    }
    n = sum(a.size for a in jax.tree.leaves(params))
    # D(2E + 2GN + H) + (K+1)(E + 2GN) + 3H + E + E·D = 128 + 80 + 12 + 8 + 32
    assert cell.param_count(4) == n == 260
    assert cell.param_count(4, "one") == cell.param_count(4, "two") == n
    big = mamba2(64)  # the reference defaults: N = 128, headdim 64 -> H = 2
    assert big.param_count(64) == sum(
        a.size for a in jax.tree.leaves(jax.eval_shape(lambda k: big.init(k, 64), key))
    )
    assert cell.name == "mamba2" and cell.hidden_size == 8 * 3 and cell.output_size == 4
    assert cell.recurrence_params == ("A_log", "dt_bias") and cell.linear is None
    assert cell.selective.heads == 4 and cell.input_size(params) == 4
    carry = cell.initial_carry((2,), jnp.float64)
    assert carry.h.shape == (2, 4, 2, 3) and carry.conv.shape == (2, 2, 20)
    assert carry.h.dtype == jnp.float64
    assert cell.selective.state(carry).shape == (2, 8, 3)
    (a_bar,) = cell.recurrent_matrices(params).values()
    assert a_bar.shape == (4, 4)
    diag = np.diag(np.asarray(a_bar))
    assert np.all((diag > 0) & (diag < 1))


def test_initialisation(key):
    dt_min, dt_max = 1e-3, 1e-1
    cell = mamba2(256, d_state=4, headdim=8, A_init_range=(1, 16))  # H = 64
    p = jax.jit(cell.init, static_argnums=1)(key, 256)
    A = np.exp(np.asarray(p["A_log"], np.float64))
    assert A.min() >= 1 and A.max() <= 16 and A.std() > 2  # uniform on [1, 16]
    dt = np.asarray(jax.nn.softplus(p["dt_bias"].astype(jnp.float64)))
    assert dt.min() >= dt_min * (1 - 1e-4) and dt.max() <= dt_max * (1 + 1e-4)
    np.testing.assert_array_equal(p["D"], 1.0)
    np.testing.assert_array_equal(p["norm_w"], 1.0)
    assert np.abs(p["conv_w"]).max() <= 1 / math.sqrt(4)
    floored = mamba2(4, headdim=2, dt_min=1e-6, dt_max=1e-5, dt_init_floor=1e-4).init(key, 4)
    np.testing.assert_allclose(jax.nn.softplus(floored["dt_bias"]), 1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: mamba2(0), "features must be a positive integer; got 0"),
        (lambda: mamba2(4, d_state=0), "d_state must be a positive integer"),
        (lambda: mamba2(4, d_conv=2.5), "d_conv must be a positive integer; got 2.5"),
        (lambda: mamba2(4, expand=0), "expand must be a positive integer"),
        (lambda: mamba2(4, headdim=3), r"headdim must divide expand\*features \(8\); got 3"),
        (lambda: mamba2(4, headdim=2, ngroups=3), r"ngroups must divide the number of heads"),
        (lambda: mamba2(4, ngroups=0), "ngroups must be a positive integer"),
        (lambda: mamba2(4, headdim=2, dt_min=0.0), "dt_min must be a positive float; got 0.0"),
        (lambda: mamba2(4, headdim=2, dt_min=0.1, dt_max=0.01), "dt_max must be >= dt_min"),
        (lambda: mamba2(4, headdim=2, dt_init_floor=-1.0), "dt_init_floor must be a non-negative"),
        (lambda: mamba2(4, headdim=2, A_init_range=(0, 16)), r"A_init_range must be a pair"),
        (lambda: mamba2(4, headdim=2, A_init_range=(16, 1)), r"A_init_range must be a pair"),
        (lambda: mamba2(4, headdim=2).init(jax.random.key(0), 3), r"input_size must equal"),
        (lambda: mamba2(4, headdim=2).param_count(5), r"input_size must equal features \(4\)"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_ssd_scan_bad_arguments():
    inputs, h_init, h_reset = random_inputs(0, 1, 5, 2, 2, 2, 2)
    with pytest.raises(ValueError, match=r"heads must divide the number of channels E \(4\)"):
        ssd_scan(inputs, None, None, h_init, h_reset, heads=3)
    with pytest.raises(ValueError, match=r"heads must be a multiple of the number of groups"):
        four = inputs._replace(B=inputs.B.repeat(2, 2), C=inputs.C.repeat(2, 2))  # G = 4
        ssd_scan(four, None, None, h_init, h_reset, heads=2)
    with pytest.raises(ValueError, match="chunk must be a positive integer; got 0"):
        ssd_scan(inputs, None, None, h_init, h_reset, heads=2, chunk=0)
    with pytest.raises(ValueError, match=r"valid must have shape \(1, 5\)"):
        ssd_scan(inputs, np.ones((1, 4), bool), None, h_init, h_reset, heads=2)
