"""The selective cells through the driver: every path of mamba and mamba2 gives the step path's
numbers (values and gradients, float64) under every semantic; remat; the memory the fused path
keeps; the methods each cell accepts and defaults to."""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from conftest import assert_trees_close
from recurrax.cells.mamba2 import mamba2
from recurrax.paths import LINEAR_METHODS, methods, resolve

B, T = 3, 11
LENGTHS = np.array([11, 7, 3])
RNG = np.random.default_rng(0)
SEMANTICS = {
    "plain": {},
    "lengths": {"lengths": LENGTHS},
    # every flag at once: padding, masked steps, and resets (one inside each chunk of 4)
    "all": {
        "lengths": LENGTHS,
        "mask": RNG.random((B, T)) < 0.8,
        "resets": np.array([[0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0]] * B, bool),
    },
}
CELLS = {
    "mamba": recurrax.mamba(3, d_state=2, d_conv=3),
    # 4 heads of 4 channels in 2 groups
    "mamba2": mamba2(8, d_state=3, d_conv=3, headdim=4, ngroups=2),
}
# Every path of each cell other than the reference step path (chunk sizes that do and do not
# divide T for the chunked forms).
PATHS = {
    "mamba": [("fused", None), ("sequential", None), ("associative", None), ("chunked", 4)],
    "mamba2": [("fused", None), ("chunked", 4), ("chunked", 5), ("chunked", 16)],
}


@partial(jax.jit, static_argnums=0)
def f64_params(cell):
    params = cell.init(jax.random.key(0), cell.output_size)
    # Perturb every leaf so that no parameter sits at a special value (D = 1, zero biases).
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [
        leaf.astype(jnp.float64) + 0.1 * jax.random.normal(k, leaf.shape, jnp.float64)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(tree, noisy)


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


def outputs_and_grads(cell, method, chunk_size, semantics, reverse, remat):
    """Values and gradients (params, inputs, initial and reset carries) of one configuration."""
    params = f64_params(cell)
    xs = jax.random.normal(jax.random.key(2), (B, T, cell.output_size), jnp.float64)
    h0 = random_carry(cell, 3, (B,))
    to = random_carry(cell, 4, ())  # a shared carry that resets return to
    flags = {k: jnp.asarray(v) for k, v in SEMANTICS[semantics].items()}

    def loss(params, xs, h0, to):
        final, ys = recurrax.unroll(
            cell,
            params,
            xs,
            initial_carry=h0,
            reset_carry=to,
            reverse=reverse,
            remat=remat,
            method=method,
            chunk_size=chunk_size,
            **flags,
        )
        value = jnp.sum(jnp.sin(2.0 * ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(final))
        return value, (final, ys)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(params, xs, h0, to)


CASES = [
    (semantics, reverse, remat)
    for semantics, reverse in itertools.product(SEMANTICS, (False, True))
    for remat in ((None, 3) if semantics == "all" else (None,))
]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize(("semantics", "reverse", "remat"), CASES)
def test_every_path_equals_the_step_path(name, semantics, reverse, remat):
    cell = CELLS[name]
    reference = outputs_and_grads(cell, "step", None, semantics, reverse, None)
    for method, chunk_size in PATHS[name]:
        got = outputs_and_grads(cell, method, chunk_size, semantics, reverse, remat)
        assert_trees_close(got, reference, rtol=1e-8, atol=1e-10)


def test_methods_and_defaults():
    assert methods(CELLS["mamba"]) == (
        "step",
        "fused",
        "sequential",
        "associative",
        "chunked",
        "auto",
    )
    assert methods(CELLS["mamba2"]) == ("step", "fused", "chunked")
    for name, default in (("mamba", "fused"), ("mamba2", "chunked")):
        cell = CELLS[name]
        params = cell.init(jax.random.key(0), cell.output_size)
        assert resolve(cell, params, B, T, None, None).method == default
        # Carries at every step: the default turns to a path that holds them.
        with_carries = resolve(cell, params, B, T, None, None, return_carries=True).method
        assert with_carries in (LINEAR_METHODS if name == "mamba" else ("step",))
        xs = jnp.ones((B, T, cell.output_size), jnp.float32)
        _final, ys, carries = recurrax.unroll(cell, params, xs, return_carries=True)
        assert ys.shape == (B, T, cell.output_size)
        assert jax.tree.leaves(carries)[0].shape[:2] == (B, T)
        with pytest.raises(ValueError, match="return_carries is not available with method="):
            recurrax.unroll(cell, params, xs, return_carries=True, method="fused")
    with pytest.raises(ValueError, match="method must be one of"):
        recurrax.unroll(
            CELLS["mamba2"],
            CELLS["mamba2"].init(jax.random.key(0), 8),
            jnp.ones((B, T, 8)),
            method="associative",
        )


def test_fused_training_step_holds_no_state_per_step():
    """At (B, T, D) = (2, 2048, 16), E = 32, N = 16, one (B, T, E, N) float32 array is 8 MiB; the
    fused path's compiled training step needs less temporary memory than that in all."""
    cell = recurrax.mamba(16, d_state=16)
    Bm, Tm, E, N = 2, 2048, 32, 16
    params = cell.init(jax.random.key(0), 16)
    xs = jnp.ones((Bm, Tm, 16), jnp.float32)

    def temp_bytes(method):
        def loss(params):
            return jnp.mean(recurrax.unroll(cell, params, xs, method=method)[1] ** 2)

        compiled = jax.jit(jax.grad(loss)).lower(params).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    one_state_array = Bm * Tm * E * N * 4
    fused = temp_bytes("fused")
    assert fused < one_state_array, (fused, one_state_array)
    # The earlier parallel form does hold such arrays: the test can tell the difference.
    assert temp_bytes("sequential") > one_state_array


def test_bfloat16_inputs_at_length_4096_stay_finite():
    for name, method in (("mamba", "fused"), ("mamba2", "chunked"), ("mamba2", "fused")):
        cell = CELLS[name]
        params = cell.init(jax.random.key(0), cell.output_size)
        xs = jax.random.normal(jax.random.key(1), (1, 4096, cell.output_size), jnp.bfloat16)

        def loss(params, xs, method=method, cell=cell):
            final, ys = recurrax.unroll(cell, params, xs, method=method)
            return jnp.mean(ys.astype(jnp.float32) ** 2), (final, ys)

        (value, (final, ys)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, xs)
        assert jax.tree.leaves(final)[0].dtype == jnp.float32
        for leaf in [value, ys, *jax.tree.leaves(grads), *jax.tree.leaves(final)]:
            assert np.all(np.isfinite(np.asarray(leaf, np.float32))), name
