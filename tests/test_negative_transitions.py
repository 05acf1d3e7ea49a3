"""``negative_transitions=True`` (Grazzi et al. 2024, "Unlocking State-Tracking in Linear RNNs
Through Negative Eigenvalues"): every decay a in [0, 1] becomes 2a - 1 in [-1, 1].

For mamba, mingru, minlstm, rglru (and mamba2, which keeps only its step path): every method
equals the step path (values and gradients, float64, under lengths, masks, resets and reverse);
the transitions are exactly the affine image of the unsigned ones, reach both ends of [-1, 1] and
stay inside it; the default (False) gives the unsigned numbers; and a two-step example of one
channel equals numbers computed by hand.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from conftest import assert_trees_close
from recurrax.cells.mamba import MambaState, mamba
from recurrax.cells.mamba2 import Mamba2State, mamba2
from recurrax.cells.mingru import MinGRUState, MinLSTMState, mingru, minlstm
from recurrax.cells.rglru import RGLRUState, rglru
from recurrax.paths import LINEAR_METHODS, methods

# One compiled program per call signature instead of op-by-op dispatch (keeps the file fast).
unroll = jax.jit(recurrax.unroll, static_argnames=("cell", "method"))

B, T = 3, 9
LENGTHS = np.array([9, 6, 2])
RNG = np.random.default_rng(0)
# Every flag of the driver at once: padding (lengths), masked steps and resets.
SEMANTICS = {
    "lengths": LENGTHS,
    "mask": RNG.random((B, T)) < 0.8,
    "resets": np.array([[0, 0, 1, 0, 0, 0, 1, 0, 0]] * B, bool),
}

# (constructor, arguments, input size): small cells, so that each comparison compiles quickly.
CONSTRUCTORS = {
    "mamba": (mamba, dict(features=3, d_state=2, d_conv=3), 3),
    "mingru": (mingru, dict(hidden_size=3), 2),
    "minlstm": (minlstm, dict(hidden_size=3), 2),
    "rglru": (rglru, dict(features=4, a_min=0.05, a_max=0.9), 4),
    "mamba2": (mamba2, dict(features=8, d_state=3, d_conv=3, headdim=4, ngroups=2), 8),
}
LINEAR = ("mamba", "mingru", "minlstm", "rglru")  # the cells with a linear form


def build(name, **options):
    constructor, arguments, _ = CONSTRUCTORS[name]
    return constructor(**arguments, **options)


# Built once, so that the jitted programs below are cached across tests (the cell is static).
SIGNED = {name: build(name, negative_transitions=True) for name in CONSTRUCTORS}
PLAIN = {name: build(name) for name in CONSTRUCTORS}
EXPLICIT_FALSE = {name: build(name, negative_transitions=False) for name in CONSTRUCTORS}


def input_size(name):
    return CONSTRUCTORS[name][2]


@partial(jax.jit, static_argnums=(0, 1))
def f64_params(name, spread):
    """float64 params with every leaf perturbed; with ``spread`` the time scales (mamba's Δ, the
    RG-LRU's Λ) range widely, so that the transitions come near both -1 and 1. Without it, on the
    inputs of :func:`outputs_and_grads`, 30-67% of the transitions are negative (down to -0.68
    for rglru, -0.75 for minlstm, -0.94 for mingru and -0.996 for mamba)."""
    cell = PLAIN[name]
    params = cell.init(jax.random.key(0), input_size(name))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [
        leaf.astype(jnp.float64) + 0.3 * jax.random.normal(k, leaf.shape, jnp.float64)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    params = jax.tree.unflatten(tree, noisy)
    if name in ("mamba", "mamba2"):
        # Δ = softplus(...) from about 0.0025 to 3: decays 2 exp(ΔA) - 1 near 1 and near -1.
        count = params["dt_bias"].shape[0]
        low, high = (-6.0, 3.0) if spread else (-1.0, 1.5)
        params["dt_bias"] = jnp.linspace(low, high, count, dtype=jnp.float64)
    if name == "rglru" and spread:
        # softplus(-Λ) up to about 3: with c = 8 and r near 1, a = σ(Λ)^(c r) reaches about 0.
        params["Lambda"] = jnp.linspace(-3.0, 3.0, params["Lambda"].shape[0], dtype=jnp.float64)
    return params


def random_carry(cell, seed, batch_shape):
    template = cell.initial_carry(batch_shape, jnp.float64)
    leaves, tree = jax.tree.flatten(template)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        tree,
        [
            0.5 * jax.random.normal(k, leaf.shape, jnp.float64)
            for leaf, k in zip(leaves, keys, strict=True)
        ],
    )


def outputs_and_grads(cell, name, method, reverse):
    """Values and gradients (params, inputs, initial and reset carries) of one configuration."""
    params = f64_params(name, False)
    xs = 1.5 * jax.random.normal(jax.random.key(2), (B, T, input_size(name)), jnp.float64)
    h0 = random_carry(cell, 3, (B,))
    to = random_carry(cell, 4, ())  # the carry that resets return to
    flags = {k: jnp.asarray(v) for k, v in SEMANTICS.items()}
    chunk_size = 4 if method == "chunked" else None  # 4 does not divide T = 9

    def loss(params, xs, h0, to):
        final, ys = recurrax.unroll(
            cell,
            params,
            xs,
            initial_carry=h0,
            reset_carry=to,
            reverse=reverse,
            method=method,
            chunk_size=chunk_size,
            **flags,
        )
        value = jnp.sum(jnp.sin(2.0 * ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(final))
        return value, (final, ys)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(params, xs, h0, to)


# --- (1) every method equals the step path --------------------------------------------------------------


def test_methods_with_the_option():
    """mamba loses its fused selective scan and mamba2 both selective paths; the linear-form
    cells keep every linear-scan method."""
    every_linear = ("step", *LINEAR_METHODS, "auto")
    for name in LINEAR:
        assert methods(SIGNED[name]) == every_linear, name
    assert SIGNED["mamba"].selective is None and PLAIN["mamba"].selective is not None
    assert methods(PLAIN["mamba"]) == ("step", "fused", *LINEAR_METHODS, "auto")
    assert SIGNED["mamba2"].selective is None and PLAIN["mamba2"].selective is not None
    assert methods(SIGNED["mamba2"]) == ("step",)
    params = f64_params("mamba", False)
    with pytest.raises(ValueError, match="method must be one of"):
        recurrax.unroll(SIGNED["mamba"], params, jnp.ones((1, 2, 3)), method="fused")


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("reverse", [False, True])
def test_every_method_equals_the_step_path(name, reverse):
    cell = SIGNED[name]
    reference = outputs_and_grads(cell, name, "step", reverse)
    assert np.abs(np.asarray(reference[1][1])).max() > 1e-2  # not a comparison of zeros
    for method in methods(cell):
        if method == "step":
            continue
        got = outputs_and_grads(cell, name, method, reverse)
        assert_trees_close(got, reference, rtol=1e-8, atol=1e-10)


def test_mamba2_default_path_is_the_step():
    cell = SIGNED["mamba2"]
    got = outputs_and_grads(cell, "mamba2", None, True)
    expected = outputs_and_grads(cell, "mamba2", "step", True)
    assert_trees_close(got, expected, rtol=1e-12, atol=1e-12)


# --- (2) the transitions: 2a - 1, reaching both ends of [-1, 1] -----------------------------------------


def linear_transitions(cell, params, xs):
    """``a (T, N)`` of :class:`LinearForm.prepare` for one example ``xs (T, D)``."""
    carry = cell.initial_carry((), jnp.float64)
    valid = jnp.ones((xs.shape[0],), bool)
    starts = jnp.zeros((xs.shape[0],), bool)
    a, b, _ = cell.linear.prepare(params, xs, valid, starts, carry, carry)
    return a, b


def mamba2_transitions(cell, params, xs):
    """Each step's decay, read off the step (the state's update is linear in ``h``):
    ``h' (h = 1) - h' (h = 0)``, ``(T, H, P, N)``."""
    zero = cell.initial_carry((), jnp.float64)
    ones = Mamba2State(jnp.ones_like(zero.h), zero.conv)

    def decay(x):
        return cell.step(params, ones, x)[0].h - cell.step(params, zero, x)[0].h

    return jax.vmap(decay)(xs)


@partial(jax.jit, static_argnums=0)
def transitions(name, xs):
    params = f64_params(name, True)
    if name == "mamba2":
        return tuple(mamba2_transitions(c[name], params, xs) for c in (SIGNED, PLAIN))
    return tuple(linear_transitions(c[name], params, xs) for c in (SIGNED, PLAIN))


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_transitions_are_2a_minus_1_and_reach_both_ends(name):
    # Inputs with a wide range (some gates saturate): 128 steps.
    xs = 3.0 * jax.random.normal(jax.random.key(5), (128, input_size(name)), jnp.float64)
    signed, plain = transitions(name, xs)
    if name == "mamba2":
        a, a_plain = np.asarray(signed), np.asarray(plain)
    else:
        (a, b), (a_plain, b_plain) = signed, plain
        a, a_plain = np.asarray(a), np.asarray(a_plain)
    assert np.all((a_plain >= 0.0) & (a_plain <= 1.0))
    np.testing.assert_allclose(a, 2.0 * a_plain - 1.0, rtol=1e-12, atol=1e-14)
    # (mamba2's are differences of two steps: -1 to rounding)
    slack = 1e-12 if name == "mamba2" else 0.0
    assert np.all((a >= -1.0 - slack) & (a <= 1.0 + slack))
    assert a.min() < -0.9 and a.max() > 0.9, (a.min(), a.max())
    assert np.mean(a < 0) > 0.05  # negative transitions are common, not a corner case
    if name == "rglru":
        # The input is normalised by the new decay: b = sqrt(1 - a²) i x, where it was
        # sqrt(1 - a_plain²) i x. With a = 2 a_plain - 1, 1 - a² = 4 a_plain (1 - a_plain), so the
        # ratio is 2 sqrt(a_plain / (1 + a_plain)) (written so, without cancellation).
        ratio = 2.0 * np.sqrt(a_plain / (1.0 + a_plain))
        np.testing.assert_allclose(np.asarray(b), ratio * np.asarray(b_plain), rtol=1e-9)
    elif name != "mamba2":
        np.testing.assert_array_equal(np.asarray(b), np.asarray(b_plain))  # input term unchanged


def test_recurrent_matrices_follow_the_map():
    for name in ("mamba", "rglru", "mamba2"):
        params = f64_params(name, True)
        (signed,) = SIGNED[name].recurrent_matrices(params).values()
        (plain,) = PLAIN[name].recurrent_matrices(params).values()
        np.testing.assert_allclose(np.diag(signed), 2.0 * np.diag(plain) - 1.0, atol=1e-14)


# --- (3) the default is the unsigned cell ----------------------------------------------------------------


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_default_false_gives_the_unsigned_numbers(name):
    default, false, signed = PLAIN[name], EXPLICIT_FALSE[name], SIGNED[name]
    assert methods(false) == methods(default)
    assert (default.selective is None) == (false.selective is None)
    params = f64_params(name, False)
    xs = jax.random.normal(jax.random.key(6), (2, 5, input_size(name)), jnp.float64)

    @jax.jit
    def run(params, xs):
        # the step and the default path (the fused selective scan for mamba and mamba2)
        return {
            (label, path): recurrax.unroll(cell, params, xs, method=method)
            for label, cell in (("default", default), ("false", false))
            for path, method in (("step", "step"), ("default", None))
        } | {("signed", "step"): recurrax.unroll(signed, params, xs, method="step")}

    out = run(params, xs)
    for method in ("step", "default"):
        assert_trees_close(out["false", method], out["default", method], rtol=0, atol=0)
        # ... and the option does change them
        assert not np.allclose(out["signed", "step"][1], out["default", method][1])


# --- (4) two steps of one channel, by hand ---------------------------------------------------------


def test_hand_computed_mingru():
    """W_z = W_h = 1, zero biases: z_t = σ(x_t), h̃_t = x_t; h_0 = 0.5, x = (2, -1).

    signed:   a_1 = 1 - 2σ(2) = -0.7615941559557646, h_1 = a_1·0.5 + 2σ(2) = 1.3807970779778822;
              a_2 = 1 - 2σ(-1) = 0.4621171572600098, h_2 = a_2 h_1 - σ(-1) = 0.36914859905807185.
    unsigned: h_2 = 1.0624592577769656.
    """
    params = {
        "W_z": jnp.ones((1, 1), jnp.float64),
        "b_z": jnp.zeros((1,), jnp.float64),
        "W_h": jnp.ones((1, 1), jnp.float64),
        "b_h": jnp.zeros((1,), jnp.float64),
    }
    xs = jnp.array([[[2.0], [-1.0]]], jnp.float64)
    h0 = MinGRUState(jnp.array([[0.5]], jnp.float64))
    for method in ("step", "associative"):
        _, ys = unroll(
            mingru(1, negative_transitions=True), params, xs, initial_carry=h0, method=method
        )
        np.testing.assert_allclose(ys[0, :, 0], [1.3807970779778822, 0.36914859905807185])
        _, ys = unroll(mingru(1), params, xs, initial_carry=h0, method=method)
        np.testing.assert_allclose(ys[0, 1, 0], 1.0624592577769656)


def test_hand_computed_minlstm():
    """W_f = W_h = 1, W_i = 0, zero biases: f_t = σ(x_t), i_t = 1/2, h̃_t = x_t; h_0 = 0.5,
    x = (-3, 2); f' = f/(f + i), i' = i/(f + i).

    signed:   a_1 = 2f'_1 - 1 = (σ(-3) - 1/2)/(σ(-3) + 1/2) = -0.826731342081877,
              h_1 = a_1·0.5 - 3 i'_1 = -3.1534626841637543;
              a_2 = (σ(2) - 1/2)/(σ(2) + 1/2) = 0.27578062269333836,
              h_2 = a_2 h_1 + 2 i'_2 = -0.14544452537222452.
    unsigned: h_2 = -0.9960303599778264.
    """
    params = {
        "W_f": jnp.ones((1, 1), jnp.float64),
        "b_f": jnp.zeros((1,), jnp.float64),
        "W_i": jnp.zeros((1, 1), jnp.float64),
        "b_i": jnp.zeros((1,), jnp.float64),
        "W_h": jnp.ones((1, 1), jnp.float64),
        "b_h": jnp.zeros((1,), jnp.float64),
    }
    xs = jnp.array([[[-3.0], [2.0]]], jnp.float64)
    h0 = MinLSTMState(jnp.array([[0.5]], jnp.float64))
    for method in ("step", "sequential"):
        _, ys = unroll(
            minlstm(1, negative_transitions=True), params, xs, initial_carry=h0, method=method
        )
        np.testing.assert_allclose(ys[0, :, 0], [-3.1534626841637543, -0.14544452537222452])
        _, ys = unroll(minlstm(1), params, xs, initial_carry=h0, method=method)
        np.testing.assert_allclose(ys[0, 1, 0], -0.9960303599778264)


def test_hand_computed_rglru():
    """c = 4, W_a = W_x = 0, zero biases, Λ = 0: r_t = i_t = 1/2, a_t = (1/2)^(4·1/2) = 1/4;
    h_0 = 1, x = (2, -1).

    signed:   ã = 2·1/4 - 1 = -1/2, sqrt(1 - ã²) = sqrt(3)/2:
              h_1 = -1/2 + sqrt(3)/2 · 1/2 · 2 = 0.3660254037844386,
              h_2 = -h_1/2 - sqrt(3)/4 = -0.6160254037844386.
    unsigned: a = 1/4, sqrt(1 - a²) = sqrt(15)/4: h_1 = 1/4 + sqrt(15)/4,
              h_2 = h_1/4 - sqrt(15)/8 = -0.17956145913796356.
    """
    params = {
        "W_a": jnp.zeros((1, 1), jnp.float64),
        "b_a": jnp.zeros((1,), jnp.float64),
        "W_x": jnp.zeros((1, 1), jnp.float64),
        "b_x": jnp.zeros((1,), jnp.float64),
        "Lambda": jnp.zeros((1,), jnp.float64),
    }
    xs = jnp.array([[[2.0], [-1.0]]], jnp.float64)
    h0 = RGLRUState(jnp.array([[1.0]], jnp.float64))
    for method in ("step", "chunked"):
        _, ys = unroll(
            rglru(1, c=4.0, negative_transitions=True), params, xs, initial_carry=h0, method=method
        )
        np.testing.assert_allclose(ys[0, :, 0], [0.3660254037844386, -0.6160254037844386])
        _, ys = unroll(rglru(1, c=4.0), params, xs, initial_carry=h0, method=method)
        np.testing.assert_allclose(ys[0, 1, 0], -0.17956145913796356)


def test_hand_computed_mamba():
    """D = E = N = R = 1, K = 2, Δ = 1, A = -1 (the example of test_mamba.py), h_0 = 1.

    u = x, z = 2x; v_t = silu(0.5 u_{t-1} + u_t); B = C = v; the signed decay is
    2e^{-1} - 1 = -0.26424111765711533; out_t = (h_t v_t + 0.5 v_t) silu(z_t).
    x = (1, 2): v_1 = silu(1) = 0.7310585786300049, h_1 = -0.2642411·1 + v_1² = 0.2702055277314077,
                out_1 = 0.9918926447015888;
                v_2 = silu(2.5) = 2.3103545499468914, h_2 = -0.2642411 h_1 + v_2² = 5.266338735815426,
                out_2 = 52.33067793936465.
    unsigned (decay e^{-1}): h_2 = 5.669685362938398, out = (1.805955528297713, 55.99112929488433).
    """
    params = {
        "W_in": jnp.array([[1.0, 2.0]], jnp.float64),
        "conv_w": jnp.array([[0.5], [1.0]], jnp.float64),
        "conv_b": jnp.zeros((1,), jnp.float64),
        "W_x": jnp.array([[0.0, 1.0, 1.0]], jnp.float64),
        "W_dt": jnp.zeros((1, 1), jnp.float64),
        "dt_bias": jnp.array([math.log(math.e - 1.0)], jnp.float64),  # softplus -> Δ = 1
        "A_log": jnp.zeros((1, 1), jnp.float64),
        "D": jnp.array([0.5], jnp.float64),
        "W_out": jnp.ones((1, 1), jnp.float64),
    }
    xs = jnp.array([[[1.0], [2.0]]], jnp.float64)
    h0 = MambaState(jnp.ones((1, 1, 1), jnp.float64), jnp.zeros((1, 1, 1), jnp.float64))
    signed = mamba(1, d_state=1, d_conv=2, expand=1, negative_transitions=True)
    plain = mamba(1, d_state=1, d_conv=2, expand=1)
    for method in ("step", "associative"):
        final, ys = unroll(signed, params, xs, initial_carry=h0, method=method)
        np.testing.assert_allclose(ys[0, :, 0], [0.9918926447015888, 52.33067793936465])
        np.testing.assert_allclose(final.h, [[[5.266338735815426]]])
    for method in ("step", "fused"):
        final, ys = unroll(plain, params, xs, initial_carry=h0, method=method)
        np.testing.assert_allclose(ys[0, :, 0], [1.805955528297713, 55.99112929488433])
        np.testing.assert_allclose(final.h, [[[5.669685362938398]]])


def test_hand_computed_mamba2():
    """D = E = H = P = G = N = 1, K = 1, Δ = 1, A = -1, skip D = 0: v = B = C = silu(x) and
    z = x; h_t = a h_{t-1} + silu(x_t)², out_t = g_t / sqrt(g_t² + 1e-5) with
    g_t = h_t silu(x_t)²; h_0 = 1, x = (1, -2).

    signed (a = 2e^{-1} - 1): h_1 = 0.2702055277314077, out_1 = 0.9997603283417016;
                              h_2 = -0.014562064170433694, out_2 = -0.25320293611217715.
    unsigned (a = e^{-1}):    h_2 = 0.3887845629525387, out = (0.9999785009009009, 0.989915005293475).
    """
    params = {
        "W_in": jnp.array([[1.0, 1.0, 1.0, 1.0, 0.0]], jnp.float64),  # (z, x, B, C, δ)
        "conv_w": jnp.ones((1, 3), jnp.float64),
        "conv_b": jnp.zeros((3,), jnp.float64),
        "dt_bias": jnp.array([math.log(math.e - 1.0)], jnp.float64),
        "A_log": jnp.zeros((1,), jnp.float64),
        "D": jnp.zeros((1,), jnp.float64),
        "norm_w": jnp.ones((1,), jnp.float64),
        "W_out": jnp.ones((1, 1), jnp.float64),
    }
    xs = jnp.array([[[1.0], [-2.0]]], jnp.float64)
    h0 = Mamba2State(jnp.ones((1, 1, 1, 1), jnp.float64), jnp.zeros((1, 0, 3), jnp.float64))
    options = dict(d_state=1, d_conv=1, expand=1, headdim=1)
    final, ys = unroll(
        mamba2(1, **options, negative_transitions=True), params, xs, initial_carry=h0
    )
    np.testing.assert_allclose(ys[0, :, 0], [0.9997603283417016, -0.25320293611217715])
    np.testing.assert_allclose(final.h, [[[[-0.014562064170433694]]]])
    final, ys = unroll(mamba2(1, **options), params, xs, initial_carry=h0)
    np.testing.assert_allclose(ys[0, :, 0], [0.9999785009009009, 0.989915005293475])
    np.testing.assert_allclose(final.h, [[[[0.3887845629525387]]]])


# --- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize("constructor", [mingru, minlstm])
def test_log_space_with_negative_transitions_is_rejected(constructor):
    with pytest.raises(ValueError, match="negative_transitions=True needs log_space=False"):
        constructor(4, log_space=True, negative_transitions=True)
    constructor(4, log_space=True, negative_transitions=False)  # fine


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_the_option_must_be_a_bool(name):
    with pytest.raises(TypeError, match="negative_transitions must be a bool; got 1"):
        build(name, negative_transitions=1)
