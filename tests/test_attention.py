"""Attention: each score against numpy, masking (padding == unpadded, exact zeros, empty rows),
gradients."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import recurrax
import recurrax.attention
from conftest import assert_trees_close
from recurrax.attention import attention

B, S, Q, M, A = 2, 4, 3, 5, 6
KINDS = ("bahdanau", "dot", "general", "concat")


def build(kind, dtype=jnp.float32):
    memory_size = Q if kind == "dot" else M
    att = attention(kind, query_size=Q, memory_size=memory_size, attention_size=None)
    if kind in ("bahdanau", "concat"):
        att = attention(kind, query_size=Q, memory_size=memory_size, attention_size=A)
    params = jax.tree.map(lambda a: a.astype(dtype), att.init(jax.random.key(0)))
    memory = jax.random.normal(jax.random.key(1), (B, S, memory_size), dtype)
    query = jax.random.normal(jax.random.key(2), (B, Q), dtype)
    return att, params, memory, query


def numpy_scores(kind, params, q, m):
    """e_s for one query ``q (Q,)`` and memory ``m (S, M)``, straight from the papers' formulas."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    q, m = np.asarray(q, np.float64), np.asarray(m, np.float64)
    if kind == "bahdanau":
        return np.array([p["v_a"] @ np.tanh(p["W_a"].T @ q + p["U_a"].T @ ms) for ms in m])
    if kind == "dot":
        return np.array([q @ ms for ms in m])
    if kind == "general":
        return np.array([q @ p["W_a"] @ ms for ms in m])
    return np.array([p["v_a"] @ np.tanh(p["W_a"].T @ np.concatenate([q, ms])) for ms in m])


def numpy_attention(kind, params, query, memory, mask):
    contexts, weights = [], []
    for b in range(query.shape[0]):
        real = np.asarray(mask[b])
        e = numpy_scores(kind, params, query[b], memory[b])
        w = np.zeros(len(e))
        if real.any():
            ex = np.exp(e[real] - e[real].max())
            w[real] = ex / ex.sum()
        weights.append(w)
        contexts.append(w @ np.asarray(memory[b], np.float64))
    return np.array(contexts), np.array(weights)


MASK = jnp.array([[True, True, True, True], [True, True, False, False]])


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_equals_numpy(kind):
    att, params, memory, query = build(kind)
    keys = att.keys(params, memory)
    context, weights = att.apply(params, query, keys, memory, MASK)
    expected_context, expected_weights = numpy_attention(kind, params, query, memory, MASK)
    np.testing.assert_allclose(context, expected_context, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jnp.sum(weights, axis=-1), 1.0, rtol=1e-6)
    assert context.dtype == jnp.float32 and weights.dtype == jnp.float32


def test_hand_example_dot():
    """q = (1, 0), memory rows (2, 0), (0, 1): scores 2 and 0, weights e²/(e²+1) and 1/(e²+1)."""
    att = attention("dot", query_size=2, memory_size=2)
    memory = jnp.array([[[2.0, 0.0], [0.0, 1.0]]])
    query = jnp.array([[1.0, 0.0]])
    context, weights = att.apply({}, query, att.keys({}, memory), memory, jnp.array([[True, True]]))
    w0 = np.exp(2.0) / (np.exp(2.0) + 1.0)
    np.testing.assert_allclose(weights, [[w0, 1 - w0]], rtol=1e-6)
    np.testing.assert_allclose(context, [[2 * w0, 1 - w0]], rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_padded_memory_equals_unpadded_and_padding_weights_are_exactly_zero(kind):
    att, params, memory, query = build(kind)
    real = 3
    # The padded positions hold arbitrary (large, finite) values: they must not matter.
    garbage = 50.0 * jax.random.normal(
        jax.random.key(7), (B, S - real, memory.shape[-1]), jnp.float32
    )
    padded = jnp.concatenate([memory[:, :real], garbage], axis=1)
    mask = jnp.broadcast_to(jnp.arange(S) < real, (B, S))
    context, weights = att.apply(params, query, att.keys(params, padded), padded, mask)
    unpadded = memory[:, :real]
    full = jnp.ones((B, real), bool)
    context_u, weights_u = att.apply(params, query, att.keys(params, unpadded), unpadded, full)
    assert_trees_close(context, context_u)
    assert_trees_close(weights[:, :real], weights_u)
    assert np.all(np.asarray(weights[:, real:]) == 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_all_masked_row_gives_zeros_and_finite_gradients(kind):
    att, params, memory, query = build(kind)
    mask = jnp.array([[True, False, True, True], [False, False, False, False]])
    context, weights = att.apply(params, query, att.keys(params, memory), memory, mask)
    assert np.all(np.isfinite(context)) and np.all(np.isfinite(weights))
    np.testing.assert_array_equal(context[1], 0.0)
    np.testing.assert_array_equal(weights[1], 0.0)
    np.testing.assert_allclose(jnp.sum(weights[0]), 1.0, rtol=1e-6)

    def loss(params, query, memory):
        c, w = att.apply(params, query, att.keys(params, memory), memory, mask)
        return jnp.sum(jnp.sin(c)) + jnp.sum(w * w)

    grads = jax.grad(loss, argnums=(0, 1, 2))(params, query, memory)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(leaf))
    # nothing reaches the query of the empty row, nor the memory at masked positions
    np.testing.assert_array_equal(grads[1][1], 0.0)
    np.testing.assert_array_equal(grads[2][0, 1], 0.0)


@pytest.mark.parametrize("kind", ["bahdanau", "general"])
def test_float64_gradient_check(kind):
    att, params, memory, query = build(kind, jnp.float64)

    def f(params, query, memory):
        c, w = att.apply(params, query, att.keys(params, memory), memory, MASK)
        return c, w

    check_grads(f, (params, query, memory), order=1, modes=["rev"], eps=1e-4)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="kind must be one of"):
        attention("multiplicative", query_size=2, memory_size=2)
    with pytest.raises(ValueError, match=r"query_size must equal memory_size.*query_size=3.*=5"):
        attention("dot", query_size=3, memory_size=5)
    with pytest.raises(ValueError, match="attention_size must be None for 'general'"):
        attention("general", query_size=3, memory_size=5, attention_size=4)
    with pytest.raises(ValueError, match="attention_size must be a positive integer"):
        attention("bahdanau", query_size=3, memory_size=5, attention_size=0)
    att, params, memory, query = build("bahdanau")
    keys = att.keys(params, memory)
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        att.apply(params, query, keys, memory, jnp.ones((B, S), jnp.int32))
    with pytest.raises(ValueError, match="mask must have shape"):
        att.apply(params, query, keys, memory, jnp.ones((B, S + 1), bool))
    with pytest.raises(ValueError, match="query must have shape"):
        att.apply(params, query[:, :2], keys, memory, MASK)
    with pytest.raises(ValueError, match="memory must have shape"):
        att.keys(params, memory[..., :2])


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs = {"jax": jax, "jnp": jnp, "np": np, "recurrax": recurrax}
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        for test in finder.find(recurrax.attention, globs=globs):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
