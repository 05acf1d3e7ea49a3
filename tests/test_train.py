"""Training steps: losses over real tokens only, metrics, truncated BPTT, the optimiser groups."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from conftest import assert_trees_close
from recurrax.models import ModelConfig, sequence_model
from recurrax.optim import recurrence_param_labels
from recurrax.tasks.spec import Batch, TaskSpec
from recurrax.train import (
    OptimizerConfig,
    init_state,
    loss_and_sums,
    make_optimizer,
    make_train_step,
    summarize,
)

LM = TaskSpec(
    "toy_lm",
    input="tokens",
    vocab_size=5,
    target="step",
    loss="cross_entropy",
    num_outputs=5,
    metric="bits_per_char",
)
CLASSIFY = TaskSpec(
    "toy", input="tokens", vocab_size=5, target="sequence", loss="cross_entropy", num_outputs=2
)


def lm_batch(seed, resets=None):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, (2, 6)).astype(np.int32)
    return Batch(x, np.roll(x, -1, axis=1), np.ones((2, 6), bool), None, resets)


def test_padding_and_unscored_steps_do_not_count():
    model = sequence_model(ModelConfig(cell="gru", width=8), LM)
    params = model.init(jax.random.key(0))
    base = lm_batch(0)
    mask = np.ones((2, 6), bool)
    mask[0, 1] = False
    batch = base._replace(loss_mask=mask, lengths=np.array([6, 4], np.int32))
    loss, sums, _ = loss_and_sums(model, params, batch)
    assert float(sums["count"]) == 6 + 4 - 1
    changed = batch._replace(targets=batch.targets.copy())
    changed.targets[0, 1] = (changed.targets[0, 1] + 1) % 5  # unscored
    changed.targets[1, 5] = (changed.targets[1, 5] + 1) % 5  # padding
    loss2, sums2, _ = loss_and_sums(model, params, changed)
    assert_trees_close((loss2, sums2), (loss, sums))
    # the mean is over real scored tokens: recompute it by hand
    logits, _ = model.apply(params, batch.inputs, lengths=batch.lengths)
    logp = jax.nn.log_softmax(logits)
    picked = np.take_along_axis(np.asarray(logp), batch.targets[..., None], -1)[..., 0]
    weights = mask & (np.arange(6)[None, :] < np.array([[6], [4]]))
    np.testing.assert_allclose(loss, -picked[weights].mean(), rtol=1e-5)


def test_summaries_follow_the_conventions():
    metrics = summarize({"loss": 6.0, "count": 4.0, "correct": 3.0}, LM)
    assert metrics["loss"] == 1.5 and metrics["accuracy"] == 0.75
    assert math.isclose(metrics["bits_per_char"], 1.5 / math.log(2))
    assert math.isclose(metrics["perplexity"], math.exp(1.5))


def test_truncated_bptt_carries_the_state_and_cuts_the_gradient():
    model = sequence_model(ModelConfig(cell="lstm", width=8), LM)
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-2), model)
    first, second = lm_batch(1), lm_batch(2)
    _, zero_carries = model.apply(model.init(jax.random.key(0)), first.inputs[:, :1])
    zero_carries = jax.tree.map(jnp.zeros_like, zero_carries)
    state = init_state(model, tx, jax.random.key(0), zero_carries)
    step = jax.jit(make_train_step(model, tx, truncated_bptt=True))
    after_first, _ = step(state, first, jax.random.key(1))
    _, expected = model.apply(state.params, first.inputs, carries=zero_carries)
    assert_trees_close(after_first.carries, expected, rtol=1e-5, atol=1e-6)
    # The second batch's loss gradient treats the carried state as a constant.
    carries = after_first.carries

    def loss_with_constant_carries(params):
        return loss_and_sums(model, params, second, carries=carries)[0]

    grads = jax.grad(loss_with_constant_carries)(after_first.params)
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = tx.update(grads, after_first.opt_state, after_first.params)
    after_second, _ = step(after_first, second, jax.random.key(1))
    expected_params = jax.tree.map(lambda p, u: p + u, after_first.params, updates)
    assert_trees_close(after_second.params, expected_params, rtol=1e-5, atol=1e-6)
    # A reset at the first step of a batch starts it from the zero state again.
    reset = np.zeros((2, 6), bool)
    reset[:, 0] = True
    _, with_reset = loss_and_sums(
        model, after_first.params, second._replace(resets=reset), carries=carries
    )[1:]
    _, from_zero = loss_and_sums(model, after_first.params, second, carries=zero_carries)[1:]
    assert_trees_close(with_reset, from_zero)


def test_recurrence_parameters_get_their_own_group():
    model = sequence_model(ModelConfig(cell="lru", width=8, state_size=4), CLASSIFY)
    labels = recurrence_param_labels(
        model.init(jax.random.key(0)), [__import__("recurrax").lru(4, 8)]
    )
    cell_labels = labels["layers"][0]["rnn"]["cell"]
    assert cell_labels["nu_log"] == "recurrence" and cell_labels["B_re"] == "default"
    assert labels["head"]["W"] == "default"


def test_optimizer_defaults_are_the_experiments_defaults():
    from recurrax.run import default_config

    config = default_config("adding", "gru")
    assert config.optimizer.to_dict() == OptimizerConfig()._asdict()
    assert OptimizerConfig().learning_rate == 3e-3
