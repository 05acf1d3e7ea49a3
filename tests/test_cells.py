"""Cells: layouts, parameter counts, hand-computed examples, numpy references, Flax equivalence, grads."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import recurrax

CELLS = {
    "rnn": recurrax.rnn(5),
    "rnn_relu_identity": recurrax.rnn(5, activation="relu", recurrent_init="identity"),
    "rnn_no_bias_glorot": recurrax.rnn(5, use_bias=False, kernel_init="glorot"),
    "lstm": recurrax.lstm(5),
    "lstm_peepholes_ln": recurrax.lstm(5, peepholes=True, layer_norm=True, kernel_init="he"),
    "gru": recurrax.gru(5),
    "gru_textbook": recurrax.gru(5, reset_after=False),
}
D = 3


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def to_numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def randomize(params, key, scale=0.5):
    """Replaces every leaf with random values, so that zero-initialised biases are exercised too."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree,
        [
            scale * jax.random.normal(k, a.shape, a.dtype)
            for k, a in zip(keys, leaves, strict=False)
        ],
    )


# --- numpy references, written from the equations in the docstrings -----------------------------


def np_lstm_step(p, h, c, x, peepholes=False, layer_norm=False):
    def ln(v):
        return (v - v.mean()) / np.sqrt(v.var() + 1e-5)

    if layer_norm:
        z = p["ln_x_scale"] * ln(x @ p["W_x"]) + p["ln_h_scale"] * ln(h @ p["W_h"]) + p["b"]
    else:
        z = x @ p["W_x"] + h @ p["W_h"] + p["b"]
    zi, zf, zg, zo = np.split(z, 4)
    if peepholes:
        zi, zf = zi + p["w_ci"] * c, zf + p["w_cf"] * c
    c = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zg)
    if peepholes:
        zo = zo + p["w_co"] * c
    c_out = p["ln_c_scale"] * ln(c) + p["ln_c_bias"] if layer_norm else c
    return sigmoid(zo) * np.tanh(c_out), c


def np_gru_textbook_step(p, h, x):
    Wr, Wz, Wn = np.split(p["W_x"], 3, axis=1)
    Ur, Uz, Un = np.split(p["W_h"], 3, axis=1)
    br, bz, bn = np.split(p["b"], 3)
    r = sigmoid(x @ Wr + h @ Ur + br)
    z = sigmoid(x @ Wz + h @ Uz + bz)
    h_tilde = np.tanh(x @ Wn + (r * h) @ Un + bn)
    return (1 - z) * h + z * h_tilde


def run_cell(cell, params, xs):
    """Plain Python loop over ``step`` for one example; returns outputs (T, H) and the final carry."""
    carry = cell.initial_carry((), xs.dtype)
    ys = []
    for x in xs:
        carry, y = cell.step(params, carry, x)
        ys.append(y)
    return np.stack(ys), carry


# --- layouts and counts ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CELLS)
def test_param_count_matches_params_and_step_shapes(name, key):
    cell = CELLS[name]
    params = cell.init(key, D)
    assert recurrax.param_count(cell, D) == sum(a.size for a in jax.tree.leaves(params))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
    carry = cell.initial_carry((), jnp.float32)
    new_carry, y = cell.step(params, carry, jnp.ones((D,), jnp.float32))
    assert y.shape == (cell.output_size,) and y.dtype == jnp.float32
    assert jax.tree.map(jnp.shape, new_carry) == jax.tree.map(jnp.shape, carry)
    assert type(new_carry) is type(carry) and hasattr(new_carry, "_fields")
    assert cell.input_size(params) == D


def test_documented_param_counts_and_bias_conventions():
    H, Din = 128, 64
    assert recurrax.param_count(recurrax.lstm(H), Din) == 4 * H * (Din + H) + 4 * H == 98816
    assert recurrax.param_count(recurrax.lstm(H), Din, biases="two") == 99328  # torch nn.LSTM
    assert recurrax.param_count(recurrax.lstm(H, peepholes=True), Din) == 98816 + 3 * H
    assert recurrax.param_count(recurrax.gru(H), Din) == 3 * H * (Din + H) + 4 * H
    assert (
        recurrax.param_count(recurrax.gru(H, reset_after=False), Din) == 3 * H * (Din + H) + 3 * H
    )
    assert recurrax.param_count(recurrax.gru(H), Din, biases="two") == 3 * H * (Din + H) + 6 * H
    assert recurrax.param_count(recurrax.rnn(H), Din, biases="one") == H * (Din + H) + H
    assert recurrax.param_count(recurrax.rnn(H, use_bias=False), Din) == H * (Din + H)
    with pytest.raises(ValueError, match="biases must be one of"):
        recurrax.param_count(recurrax.rnn(H), Din, biases="three")


def test_initialisation_conventions(key):
    H = 6
    lstm = recurrax.lstm(H).init(key, 4)
    np.testing.assert_array_equal(lstm["b"][H : 2 * H], 1.0)
    np.testing.assert_array_equal(np.delete(np.asarray(lstm["b"]), np.s_[H : 2 * H]), 0.0)
    assert recurrax.lstm(H, forget_bias=0.0).init(key, 4)["b"].sum() == 0.0
    for block in recurrax.lstm(H).recurrent_matrices(lstm).values():
        np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-5)
    irnn = recurrax.rnn(H, recurrent_init="identity", identity_scale=0.5).init(key, 4)
    np.testing.assert_array_equal(irnn["W_hh"], 0.5 * np.eye(H))


# --- hand-computed examples -------------------------------------------------------------------------


def test_rnn_hand_computed_example():
    params = {
        "W_xh": jnp.array([[1.0, -1.0]]),
        "W_hh": jnp.array([[0.5, 0.0], [0.0, 0.5]]),
        "b_h": jnp.array([0.0, 0.1]),
    }
    xs = jnp.array([[[1.0], [2.0]]])
    _, ys = recurrax.unroll(recurrax.rnn(2), params, xs)
    # h1 = tanh([1, -1 + 0.1]); h2 = tanh([2 + 0.5 h1[0], -2 + 0.5 h1[1] + 0.1])
    h1 = np.tanh([1.0, -0.9])
    h2 = np.tanh([2.0 + 0.5 * h1[0], -2.0 + 0.5 * h1[1] + 0.1])
    np.testing.assert_allclose(ys[0], [h1, h2], rtol=1e-6)
    np.testing.assert_allclose(
        ys[0], [[0.76159416, -0.71629787], [0.9830411, -0.9783775]], rtol=1e-6
    )


def test_lstm_hand_computed_example():
    params = {
        "W_x": jnp.array([[1.0, 2.0, 3.0, 4.0]]),
        "W_h": jnp.array([[0.5, -0.5, 0.25, 1.0]]),
        "b": jnp.array([0.0, 1.0, 0.0, 0.0]),
    }
    (_h, c), ys = recurrax.unroll(recurrax.lstm(1), params, jnp.array([[[1.0], [-1.0]]]))
    # step 1: z = [1, 3, 3, 4]; c1 = σ(1) tanh(3); h1 = σ(4) tanh(c1)
    c1 = sigmoid(1.0) * np.tanh(3.0)
    h1 = sigmoid(4.0) * np.tanh(c1)
    np.testing.assert_allclose(ys[0, 0, 0], h1, rtol=1e-6)
    np.testing.assert_allclose(
        [ys[0, 0, 0], ys[0, 1, 0], c[0, 0]], [0.6103203, -0.00566867, -0.17556305], rtol=1e-5
    )


def test_gru_hand_computed_example():
    params = {
        "W_x": jnp.array([[1.0, -1.0, 2.0]]),
        "W_h": jnp.array([[0.5, 0.5, -1.0]]),
        "b": jnp.array([0.0, 0.0, 0.5]),
        "b_hn": jnp.array([0.25]),
    }
    _, ys = recurrax.unroll(recurrax.gru(1), params, jnp.array([[[1.0], [-1.0]]]))
    # step 1 from h0 = 0: r = σ(1), z = σ(-1), n = tanh(2 + 0.5 + r * 0.25), h1 = (1 - z) n
    n = np.tanh(2.5 + sigmoid(1.0) * 0.25)
    np.testing.assert_allclose(ys[0, 0, 0], (1 - sigmoid(-1.0)) * n, rtol=1e-6)
    np.testing.assert_allclose(ys[0, :, 0], [0.72425501, 0.38680838], rtol=1e-5)


# --- numpy references and Flax ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "peepholes,layer_norm", [(False, False), (True, False), (False, True), (True, True)]
)
def test_lstm_equals_numpy_reference(peepholes, layer_norm, key):
    cell = recurrax.lstm(4, peepholes=peepholes, layer_norm=layer_norm)
    params = randomize(cell.init(key, D), jax.random.key(1))
    xs = np.asarray(jax.random.normal(jax.random.key(2), (6, D)), np.float64)
    ys, carry = run_cell(
        cell, jax.tree.map(lambda a: a.astype(jnp.float64), params), jnp.asarray(xs)
    )
    p = to_numpy(params)
    h, c = np.zeros(4), np.zeros(4)
    for t, x in enumerate(xs):
        h, c = np_lstm_step(p, h, c, x, peepholes, layer_norm)
        np.testing.assert_allclose(ys[t], h, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(carry.c, c, rtol=1e-10, atol=1e-12)


def test_textbook_gru_equals_numpy_reference(key):
    cell = recurrax.gru(4, reset_after=False)
    params = randomize(cell.init(key, D), jax.random.key(1))
    xs = np.asarray(jax.random.normal(jax.random.key(2), (6, D)), np.float64)
    ys, _ = run_cell(cell, jax.tree.map(lambda a: a.astype(jnp.float64), params), jnp.asarray(xs))
    p, h = to_numpy(params), np.zeros(4)
    for t, x in enumerate(xs):
        h = np_gru_textbook_step(p, h, x)
        np.testing.assert_allclose(ys[t], h, rtol=1e-10, atol=1e-12)


def test_gru_update_gate_mapping_between_conventions(key):
    """With r = 1 everywhere (huge reset bias) and b_hn = 0 the two forms agree once z is negated."""
    H = 4
    default = recurrax.gru(H)
    p = randomize(default.init(key, D), jax.random.key(1))
    p["b"] = p["b"].at[:H].set(50.0)  # σ(50) = 1 in float32: r ≡ 1
    p["b_hn"] = jnp.zeros((H,), jnp.float32)
    flip = jnp.asarray(np.repeat([1.0, -1.0, 1.0], H), jnp.float32)
    textbook = {
        "W_x": p["W_x"] * flip[None, :],
        "W_h": p["W_h"] * flip[None, :],
        "b": p["b"] * flip,
    }
    xs = jax.random.normal(jax.random.key(2), (2, 7, D))
    _, ys_default = recurrax.unroll(default, p, xs)
    _, ys_textbook = recurrax.unroll(recurrax.gru(H, reset_after=False), textbook, xs)
    np.testing.assert_allclose(ys_default, ys_textbook, rtol=1e-5, atol=1e-6)


def _flax_dense(kernel, bias=None):
    return {"kernel": kernel} if bias is None else {"kernel": kernel, "bias": bias}


def test_lstm_equals_flax_lstm_cell(key):
    H = 4
    flax_cell = nn.LSTMCell(H)
    x0 = jnp.zeros((2, D), jnp.float32)
    flax_params = flax_cell.init(key, flax_cell.initialize_carry(key, x0.shape), x0)["params"]
    flax_params = randomize(flax_params, jax.random.key(1))
    fp = flax_params
    params = {
        "W_x": jnp.concatenate([fp[f"i{g}"]["kernel"] for g in "ifgo"], axis=1),
        "W_h": jnp.concatenate([fp[f"h{g}"]["kernel"] for g in "ifgo"], axis=1),
        "b": jnp.concatenate([fp[f"h{g}"]["bias"] for g in "ifgo"]),
    }
    xs = jax.random.normal(jax.random.key(2), (2, 6, D), jnp.float32)
    (c, h), ys_flax = nn.RNN(flax_cell, return_carry=True).apply({"params": {"cell": fp}}, xs)
    (h_ours, c_ours), ys = recurrax.unroll(recurrax.lstm(H, forget_bias=0.0), params, xs)
    np.testing.assert_allclose(ys, ys_flax, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_ours, h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_ours, c, rtol=1e-5, atol=1e-6)


def test_gru_equals_flax_gru_cell(key):
    H = 4
    flax_cell = nn.GRUCell(H)
    x0 = jnp.zeros((2, D), jnp.float32)
    fp = flax_cell.init(key, flax_cell.initialize_carry(key, x0.shape), x0)["params"]
    fp = randomize(fp, jax.random.key(1))
    params = {
        "W_x": jnp.concatenate([fp[f"i{g}"]["kernel"] for g in "rzn"], axis=1),
        "W_h": jnp.concatenate([fp[f"h{g}"]["kernel"] for g in "rzn"], axis=1),
        "b": jnp.concatenate([fp[f"i{g}"]["bias"] for g in "rzn"]),
        "b_hn": fp["hn"]["bias"],
    }
    xs = jax.random.normal(jax.random.key(2), (2, 6, D), jnp.float32)
    h, ys_flax = nn.RNN(flax_cell, return_carry=True).apply({"params": {"cell": fp}}, xs)
    carry, ys = recurrax.unroll(recurrax.gru(H), params, xs)
    np.testing.assert_allclose(ys, ys_flax, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry.h, h, rtol=1e-5, atol=1e-6)


# --- gradients ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CELLS)
def test_check_grads_float64(name, key):
    cell = CELLS[name]
    params = randomize(cell.init(key, D), jax.random.key(1))
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    xs = jax.random.normal(jax.random.key(2), (2, 4, D), jnp.float64)
    if name == "rnn_relu_identity":
        xs = xs + 3.0  # keep ReLU pre-activations away from the kink at 0

    def loss(params, xs):
        carry, ys = recurrax.unroll(cell, params, xs, lengths=jnp.array([4, 2]))
        return jnp.sum(ys**2) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(carry))

    check_grads(jax.jit(loss), (params, xs), order=2, modes=["rev"], atol=1e-5, rtol=1e-5)


# --- bad constructor arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: recurrax.rnn(4, activation="sigmoid"), "activation must be one of"),
        (lambda: recurrax.rnn(0), "hidden_size must be a positive integer; got 0"),
        (lambda: recurrax.rnn(4, recurrent_init="random"), "recurrent_init must be one of"),
        (lambda: recurrax.lstm(4, kernel_init="xavier"), "kernel_init must be one of"),
        (lambda: recurrax.gru(2.5), "hidden_size must be a positive integer; got 2.5"),
        (lambda: recurrax.lstm(4).init(jax.random.key(0), -1), "input_size must be a positive"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
