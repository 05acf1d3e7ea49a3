"""The fused path of the classic cells equals the reference step path: values and gradients (float64)
under every semantic, for every variant that has a projected form."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from conftest import assert_trees_close
from recurrax.paths import gated_method

B, T, D, H = 3, 9, 2, 4
CELLS = {
    "rnn": recurrax.rnn(H),
    "rnn-relu-nobias": recurrax.rnn(H, activation="relu", use_bias=False),
    "lstm": recurrax.lstm(H),
    "lstm-peepholes-layernorm": recurrax.lstm(H, peepholes=True, layer_norm=True),
    "gru": recurrax.gru(H),
}
LENGTHS = np.array([9, 5, 0])


def f64_params(cell, key=0):
    """Params in float64, moved off their initial values so that every parameter matters."""
    params = cell.init(jax.random.key(key), D)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(key + 100), len(leaves))
    noisy = [
        leaf.astype(jnp.float64) + 0.3 * jax.random.normal(k, leaf.shape, jnp.float64)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(tree, noisy)


def random_carry(cell, key, batch_shape):
    template = cell.initial_carry(batch_shape, jnp.float64)
    leaves, tree = jax.tree.flatten(template)
    keys = jax.random.split(jax.random.key(key), len(leaves))
    return jax.tree.unflatten(
        tree,
        [
            jax.random.normal(k, leaf.shape, jnp.float64)
            for leaf, k in zip(leaves, keys, strict=True)
        ],
    )


def loss_terms(out):
    """A loss that touches the final carry, every output and every carry in a nonlinear way."""
    final, ys, carries = out
    return (
        jnp.sum(jnp.sin(3.0 * ys))
        + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(final))
        + sum(jnp.sum(jnp.cos(leaf)) for leaf in jax.tree.leaves(carries))
    )


SEMANTICS = {
    "plain": {},
    "lengths": {"lengths": LENGTHS},
    "mask+resets": {
        "mask": np.random.default_rng(1).random((B, T)) < 0.75,
        "resets": np.random.default_rng(2).random((B, T)) < 0.3,
    },
    "all": {
        "lengths": LENGTHS,
        "mask": np.random.default_rng(3).random((B, T)) < 0.75,
        "resets": np.random.default_rng(4).random((B, T)) < 0.3,
    },
}


# The default run covers each way the fused path handles the flags (none, valid steps only, valid
# steps and starts), both directions and remat; the other combinations run with `-m slow`.
DEFAULT_CASES = {
    ("plain", False, None),
    ("lengths", True, None),
    ("all", False, None),
    ("all", True, 4),
}
CASES = [
    pytest.param(*case, marks=() if case in DEFAULT_CASES else pytest.mark.slow)
    for case in [(semantics, reverse, None) for semantics in SEMANTICS for reverse in (False, True)]
    + [("all", False, 4), ("all", True, 4), ("plain", False, 4)]
]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize(("semantics", "reverse", "remat"), CASES)
def test_fused_equals_step_values_and_gradients(name, semantics, reverse, remat):
    cell = CELLS[name]
    params = f64_params(cell)
    xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float64)
    h0 = random_carry(cell, 2, (B,))
    to = random_carry(cell, 3, ())  # a shared carry that resets return to

    def run(method, params, xs, h0, to):
        return recurrax.unroll(
            cell,
            params,
            xs,
            initial_carry=h0,
            reset_carry=to,
            reverse=reverse,
            remat=remat,
            return_carries=True,
            method=method,
            **SEMANTICS[semantics],
        )

    @jax.jit  # both paths, values and gradients, in one program: one compilation per case
    def outputs_and_grads(*args):
        methods = ("step", "fused")
        outputs = {m: run(m, *args) for m in methods}
        grad = partial(jax.grad, argnums=(0, 1, 2, 3))
        return outputs, {m: grad(lambda *a, m=m: loss_terms(run(m, *a)))(*args) for m in methods}

    outputs, grads = outputs_and_grads(params, xs, h0, to)
    assert_trees_close(outputs["fused"], outputs["step"])
    assert_trees_close(grads["fused"], grads["step"], rtol=1e-10, atol=1e-12)
    # The gradient reaches every parameter (none of them is silently dropped by the fused VJP).
    for path, g in jax.tree_util.tree_leaves_with_path(grads["fused"][0]):
        assert np.any(np.asarray(g) != 0), path


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_fused_time_major_unroll_and_float32_inputs(name):
    cell = CELLS[name]
    params = cell.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (T, B, D), jnp.float32)
    kw = dict(time_major=True, lengths=LENGTHS, reverse=True, return_carries=True)
    for unroll in (1, 3):
        fused = recurrax.unroll(cell, params, xs, method="fused", unroll=unroll, **kw)
        step = recurrax.unroll(cell, params, xs, method="step", **kw)
        assert_trees_close(fused, step, rtol=1e-5, atol=1e-6)
    bf16 = recurrax.unroll(cell, params, xs.astype(jnp.bfloat16), method="fused", time_major=True)
    assert bf16[1].dtype == jnp.float32


def test_fused_is_refused_for_cells_without_a_projected_form():
    xs = jnp.ones((1, 3, D), jnp.float32)
    textbook = recurrax.gru(H, reset_after=False)
    assert recurrax.lstm(H).projected is not None and textbook.projected is None
    with pytest.raises(ValueError, match="method must be one of"):
        recurrax.unroll(textbook, textbook.init(jax.random.key(0), D), xs, method="fused")
    lru = recurrax.lru(state_size=4, features=D)
    with pytest.raises(ValueError, match="method must be one of"):
        recurrax.unroll(lru, lru.init(jax.random.key(0), D), xs, method="fused")


@pytest.mark.parametrize(
    ("name", "hidden", "batch", "on_cpu"),
    [
        ("lstm", 256, 32, "step"),
        ("lstm", 256, 16, "fused"),
        ("gru", 64, 128, "step"),
        ("gru", 64, 127, "fused"),
        ("rnn", 256, 32, "fused"),
    ],
)
def test_default_path_is_fused_until_gated_steps_are_large(name, hidden, batch, on_cpu):
    cell = getattr(recurrax, name)(hidden)
    params = cell.init(jax.random.key(0), D)
    assert gated_method(cell.projected, params, batch, backend="cpu") == on_cpu
    assert gated_method(cell.projected, params, batch, backend="gpu") == "fused"
    xs = jnp.ones((batch, 2, D), jnp.float32)
    jaxpr = str(jax.make_jaxpr(lambda p: recurrax.unroll(cell, p, xs))(params))
    took = "fused" if "custom_vjp_call" in jaxpr else "step"
    assert took == gated_method(cell.projected, params, batch)


def test_fused_keeps_less_for_the_backward_pass_and_remat_keeps_less_still():
    cell = recurrax.lstm(8)
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (2, 2048, 4), jnp.float32)

    def loss(params, method, remat):
        return jnp.mean(recurrax.unroll(cell, params, xs, remat=remat, method=method)[1] ** 2)

    assert_trees_close(
        jax.grad(loss)(params, "fused", 64),
        jax.grad(loss)(params, "fused", None),
        rtol=1e-4,
        atol=1e-6,
    )

    def temp_bytes(method, remat):
        compiled = jax.jit(jax.grad(loss), static_argnums=(1, 2)).lower(params, method, remat)
        return compiled.compile().memory_analysis().temp_size_in_bytes

    # Autodiff of the step loop keeps every gate activation; the fused VJP only the carries
    # (2H floats a step), and with remat only the carries at chunk boundaries.
    assert temp_bytes("fused", None) * 3 < temp_bytes("step", None)
    assert temp_bytes("fused", 64) * 1.5 < temp_bytes("fused", None)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_fused_gradient_of_the_params_alone_skips_nothing_it_needs(name):
    """When only the params are differentiated, the fused VJP skips the input gradient."""
    cell = CELLS[name]
    params = f64_params(cell)
    xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float64)
    semantics = SEMANTICS["all"]

    def loss(params, method):
        _, ys = recurrax.unroll(cell, params, xs, method=method, reverse=True, **semantics)
        return jnp.sum(jnp.sin(3.0 * ys))

    fused = jax.jit(jax.grad(loss), static_argnums=1)
    assert_trees_close(fused(params, "fused"), fused(params, "step"), rtol=1e-10, atol=1e-12)
