"""Sequence layers, pooling and readouts: padded == unpadded, composition, dropout semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from conftest import assert_trees_close
from recurrax.layers import DropoutState, _with_recurrent_dropout

B, T, D, H = 3, 6, 2, 4
LENGTHS = np.array([6, 4, 1])


def inputs(seed=1, features=D):
    return jax.random.normal(jax.random.key(seed), (B, T, features), jnp.float32)


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_equals_two_unrolls_and_padded_equals_alone(merge):
    layer = recurrax.bidirectional(recurrax.lstm(H), recurrax.gru(H), merge=merge)
    params = layer.init(jax.random.key(0), D)
    apply = jax.jit(layer.apply)  # one compilation per shape instead of one per operation
    xs = inputs()
    carry, ys = apply(params, xs, lengths=LENGTHS)
    f_carry, f_ys = recurrax.unroll(
        recurrax.lstm(H), params["forward"]["cell"], xs, lengths=LENGTHS
    )
    b_carry, b_ys = recurrax.unroll(
        recurrax.gru(H), params["backward"]["cell"], xs, lengths=LENGTHS, reverse=True
    )
    expected = jnp.concatenate([f_ys, b_ys], -1) if merge == "concat" else f_ys + b_ys
    assert_trees_close(ys, expected)
    assert_trees_close(carry, recurrax.BidirectionalState(f_carry, b_carry))
    assert layer.output_size == ys.shape[-1]
    for b, L in enumerate(LENGTHS):
        alone_carry, alone = apply(params, xs[b : b + 1, :L])
        assert_trees_close(ys[b : b + 1, :L], alone)
        np.testing.assert_array_equal(ys[b, L:], 0.0)
        assert_trees_close(jax.tree.map(lambda a: a[b : b + 1], carry), alone_carry)


def test_bidirectional_custom_merge_and_errors():
    layer = recurrax.bidirectional(recurrax.rnn(H), merge=lambda f, b: f * b, merged_size=H)
    params = layer.init(jax.random.key(0), D)
    _, ys = layer.apply(params, inputs())
    assert ys.shape == (B, T, H)
    with pytest.raises(ValueError, match="merge must be one of"):
        recurrax.bidirectional(recurrax.rnn(H), merge="max")
    with pytest.raises(ValueError, match="merged_size must be given"):
        recurrax.bidirectional(recurrax.rnn(H), merge=lambda f, b: f)
    with pytest.raises(ValueError, match="merge='sum' needs equal output sizes"):
        recurrax.bidirectional(recurrax.rnn(H), recurrax.rnn(H + 1), merge="sum")
    with pytest.raises(TypeError, match=r"forward must be a recurrax\.Cell or SequenceLayer"):
        recurrax.bidirectional("lstm")


def test_learned_initial_carry_is_a_trained_parameter():
    layer = recurrax.recurrent(recurrax.gru(H), learn_initial_carry=True)
    params = layer.init(jax.random.key(0), D)
    assert_trees_close(params["initial_carry"], recurrax.GRUState(jnp.zeros((H,), jnp.float32)))
    params["initial_carry"] = recurrax.GRUState(jnp.full((H,), 0.5, jnp.float32))
    _, ys = layer.apply(params, inputs())
    _, expected = recurrax.unroll(
        recurrax.gru(H), params["cell"], inputs(), initial_carry=params["initial_carry"]
    )
    assert_trees_close(ys, expected)
    grads = jax.grad(lambda p: jnp.sum(layer.apply(p, inputs())[1]))(params)
    assert np.any(np.asarray(grads["initial_carry"].h) != 0)


@pytest.mark.parametrize("bidirectional_merge", [None, "concat"])
def test_stacked_equals_manual_composition_with_residuals(bidirectional_merge):
    cells = [recurrax.lstm(H), recurrax.gru(H), recurrax.rnn(H)]
    layer = recurrax.stacked(cells, residual=True, bidirectional_merge=bidirectional_merge)
    params = layer.init(jax.random.key(0), D)
    apply = jax.jit(layer.apply)  # one compilation per shape instead of one per operation
    xs = inputs()
    carries, ys = apply(params, xs, lengths=LENGTHS)
    u = xs
    for i, cell in enumerate(cells):
        sub = (
            recurrax.recurrent(cell)
            if bidirectional_merge is None
            else recurrax.bidirectional(cell, merge=bidirectional_merge)
        )
        carry, y = sub.apply(params["layers"][i], u, lengths=LENGTHS)
        assert_trees_close(carries[i], carry)
        u = y + u if y.shape[-1] == u.shape[-1] else y  # layer 0 changes size: no residual
    assert_trees_close(ys, u)
    for b, L in enumerate(LENGTHS):
        assert_trees_close(ys[b : b + 1, :L], apply(params, xs[b : b + 1, :L])[1])


@pytest.mark.parametrize("bidirectional_merge", [None, "sum"])
def test_stacked_starts_from_given_carries_and_resets_to_reset_carries(bidirectional_merge):
    """Truncated BPTT through a deep RNN: layer i starts from initial_carry[i] and a reset inside
    the sequence returns it to reset_carry[i], exactly as each layer run alone."""
    cells = [recurrax.lstm(H), recurrax.gru(H)]
    layer = recurrax.stacked(cells, bidirectional_merge=bidirectional_merge)
    params = layer.init(jax.random.key(0), D)
    xs = inputs()
    resets = np.zeros((B, T), bool)
    resets[:, 3] = True
    keys = iter(jax.random.split(jax.random.key(5), 16))

    def carry_of(cell):
        one = jax.tree.map(
            lambda a: jax.random.normal(next(keys), (B, *a.shape), jnp.float32),
            cell.initial_carry(),
        )
        if bidirectional_merge is None:
            return one
        return recurrax.BidirectionalState(one, jax.tree.map(lambda a: -a, one))

    given, reset_to = [carry_of(c) for c in cells], [carry_of(c) for c in cells]
    carries, ys = layer.apply(params, xs, resets=resets, initial_carry=given, reset_carry=reset_to)
    u = xs
    for i, cell in enumerate(cells):
        sub = (
            recurrax.recurrent(cell)
            if bidirectional_merge is None
            else recurrax.bidirectional(cell, merge=bidirectional_merge)
        )
        carry, u = sub.apply(
            params["layers"][i], u, resets=resets, initial_carry=given[i], reset_carry=reset_to[i]
        )
        assert_trees_close(carries[i], carry)
    assert_trees_close(ys, u)
    with pytest.raises(ValueError, match="reset_carry must hold one carry per layer"):
        layer.apply(params, xs, resets=resets, reset_carry=reset_to[:1])


def test_stacked_resets_keep_the_recurrent_dropout_masks():
    layer = recurrax.stacked(
        [recurrax.gru(H)], variational=recurrax.VariationalDropout(recurrent=0.5)
    )
    params = layer.init(jax.random.key(0), D)
    resets = np.zeros((B, T), bool)
    resets[:, 2] = True
    zeros = [recurrax.GRUState(jnp.zeros((B, H), jnp.float32))]
    key = jax.random.key(3)
    with_reset = layer.apply(
        params, inputs(), resets=resets, reset_carry=zeros, train=True, key=key
    )
    default = layer.apply(params, inputs(), resets=resets, train=True, key=key)
    assert_trees_close(with_reset, default)  # zeros is the default reset carry


def test_dropout_is_off_in_evaluation_and_needs_a_key_in_training():
    rates = recurrax.VariationalDropout(inputs=0.3, outputs=0.3, recurrent=0.3)
    cells = [recurrax.lstm(H), recurrax.lstm(H)]
    layer = recurrax.stacked(cells, dropout=0.5, variational=rates)
    plain = recurrax.stacked(cells)
    params = layer.init(jax.random.key(0), D)
    assert_trees_close(layer.apply(params, inputs()), plain.apply(params, inputs()))
    with pytest.raises(ValueError, match="key must be a PRNG key when train=True"):
        layer.apply(params, inputs(), train=True)
    a = layer.apply(params, inputs(), train=True, key=jax.random.key(1))[1]
    b = layer.apply(params, inputs(), train=True, key=jax.random.key(2))[1]
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match=r"variational.recurrent must be a float in \[0, 1\)"):
        recurrax.stacked(cells, variational=recurrax.VariationalDropout(recurrent=1.0))


def _identity_rnn(recurrent_weight):
    """A linear RNN with W_xh = I, W_hh = w*I and no bias: h_t = w h_{t-1} + x_t."""
    params = {
        "W_xh": jnp.eye(D, dtype=jnp.float32),
        "W_hh": recurrent_weight * jnp.eye(D, dtype=jnp.float32),
    }
    return recurrax.rnn(D, activation="identity", use_bias=False), params


def test_variational_input_and_output_masks_are_shared_across_time():
    cell, p = _identity_rnn(0.0)  # y_t = x_t (times the masks)
    for rates in (
        recurrax.VariationalDropout(inputs=0.5),
        recurrax.VariationalDropout(outputs=0.5),
    ):
        layer = recurrax.stacked([cell], variational=rates)
        xs = inputs() + 5.0  # no zeros in the input
        _, ys = layer.apply({"layers": [{"cell": p}]}, xs, train=True, key=jax.random.key(3))
        ratio = np.asarray(ys / xs)
        np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), rtol=1e-6)
        assert set(np.round(np.unique(ratio), 5)) <= {0.0, 2.0}


def test_variational_recurrent_mask_is_fixed_over_time_and_never_touches_lstm_c():
    cell, p = _identity_rnn(1.0)  # h_t = m * h_{t-1} + x_t
    layer = recurrax.stacked([cell], variational=recurrax.VariationalDropout(recurrent=0.5))
    xs = inputs() + 5.0
    _, hs = layer.apply({"layers": [{"cell": p}]}, xs, train=True, key=jax.random.key(4))
    m = (hs[:, 1] - xs[:, 1]) / hs[:, 0]
    assert set(np.round(np.unique(np.asarray(m)), 5)) <= {0.0, 2.0}
    for t in range(1, T):
        np.testing.assert_allclose(hs[:, t], m * hs[:, t - 1] + xs[:, t], rtol=1e-5)

    lstm = recurrax.lstm(H)
    lp = lstm.init(jax.random.key(0), D)
    state = recurrax.LSTMState(jnp.ones((H,), jnp.float32), jnp.full((H,), 0.7, jnp.float32))
    wrapped = _with_recurrent_dropout(lstm)
    new, _ = wrapped.step(lp, DropoutState(state, jnp.zeros((H,), jnp.float32)), xs[0, 0])
    expected, _ = lstm.step(lp, state._replace(h=jnp.zeros((H,), jnp.float32)), xs[0, 0])
    assert_trees_close(new.state, expected)  # h dropped, c = 0.7 untouched


def test_pooling_ignores_padding():
    ys = inputs(features=H)
    garbage = ys.at[1, 4:].set(50.0).at[2, 1:].set(-50.0)
    last = recurrax.pool_last(garbage, jnp.asarray(LENGTHS))
    mean = recurrax.pool_mean(garbage, jnp.asarray(LENGTHS))
    attention = recurrax.attention_pooling(8)
    ap = attention.init(jax.random.key(0), H)
    att = attention.apply(ap, garbage, jnp.asarray(LENGTHS))
    for b, L in enumerate(LENGTHS):
        np.testing.assert_allclose(last[b], ys[b, L - 1], rtol=1e-6)
        np.testing.assert_allclose(mean[b], ys[b, :L].mean(0), rtol=1e-5)
        alone = attention.apply(ap, ys[b : b + 1, :L])
        np.testing.assert_allclose(att[b : b + 1], alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(recurrax.pool_last(ys, jnp.zeros((B,), jnp.int32)), 0.0)
    np.testing.assert_array_equal(recurrax.pool_mean(ys, jnp.zeros((B,), jnp.int32)), 0.0)
    assert np.all(np.isfinite(attention.apply(ap, ys, jnp.zeros((B,), jnp.int32))))


def test_attention_pooling_is_a_convex_combination_of_real_steps():
    ys = inputs(features=H)
    attention = recurrax.attention_pooling(8)
    ap = attention.init(jax.random.key(0), H)
    # With a single real step the pooled vector is that step.
    np.testing.assert_allclose(
        attention.apply(ap, ys, jnp.ones((B,), jnp.int32)), ys[:, 0], rtol=1e-6
    )
    pooled = attention.apply(ap, ys)
    assert np.all(pooled <= ys.max(1) + 1e-6) and np.all(pooled >= ys.min(1) - 1e-6)


def test_embedding_and_dense_readout():
    emb = recurrax.embedding(10, 5)
    e = emb.init(jax.random.key(0))
    tokens = jnp.array([[1, 2, 9]], jnp.int32)
    out = emb.apply(e, tokens)
    np.testing.assert_array_equal(out[0, 2], e["E"][9])
    with pytest.raises(TypeError, match="tokens must be an integer array"):
        emb.apply(e, jnp.ones((1, 3), jnp.float32))
    readout = recurrax.dense(3)
    r = readout.init(jax.random.key(1), 5)
    np.testing.assert_allclose(
        readout.apply(r, out), out @ r["W"] + r["b"][None, None, :], rtol=1e-6
    )


@pytest.mark.parametrize("family", ["lru", "mamba"])
def test_residual_cell_stepped_equals_residual_block(family, key):
    """The one-step form of the block, unrolled on the step path, equals the block itself (run on
    its default path) at every real step and in the final carry, with the same params."""
    if family == "lru":
        cell, glu = recurrax.lru(8, 6), True
    else:
        cell, glu = recurrax.mamba(6, d_state=4), False
    block = recurrax.residual_block(cell, 6, glu=glu)
    step_cell = recurrax.layers.residual_cell(cell, 6, glu=glu)
    block_params = block.init(key, 6)
    cell_params = {**block_params, "rnn": block_params["rnn"]["cell"]}
    assert jax.tree.structure(cell_params) == jax.tree.structure(step_cell.init(key, 6))
    xs = jax.random.normal(jax.random.key(1), (2, 7, 6), jnp.float32)
    lengths = jnp.array([7, 4], jnp.int32)
    carry, ys = block.apply(block_params, xs, lengths=lengths)
    step_carry, step_ys = recurrax.unroll(
        step_cell, cell_params, xs, lengths=lengths, method="step"
    )
    # (At padded steps the block passes its input through the residual, the cell outputs zero.)
    real = (jnp.arange(7, dtype=jnp.int32)[None, :] < lengths[:, None])[..., None]
    assert_trees_close(jnp.where(real, step_ys, 0.0), jnp.where(real, ys, 0.0), 1e-5, 1e-5)
    assert_trees_close(step_carry, carry, rtol=1e-5, atol=1e-5)


def test_residual_cell_rejects_bad_sizes(key):
    with pytest.raises(ValueError, match=r"cell must output features \(6\).*got 8"):
        recurrax.layers.residual_cell(recurrax.gru(8), 6, glu=False)
    with pytest.raises(ValueError, match=r"input_size must equal features \(6\).*got 5"):
        recurrax.layers.residual_cell(recurrax.gru(8), 6).init(key, 5)
