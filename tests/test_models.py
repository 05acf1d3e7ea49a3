"""Models: shapes for every family, padding, carried state (truncated BPTT), sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_trees_close
from recurrax.models import FAMILIES, ModelConfig, sample, sequence_model
from recurrax.tasks.spec import TaskSpec

CLASSIFY = TaskSpec(
    "toy_classify",
    input="tokens",
    vocab_size=7,
    target="sequence",
    loss="cross_entropy",
    num_outputs=3,
)
LM = TaskSpec(
    "toy_lm", input="tokens", vocab_size=7, target="step", loss="cross_entropy", num_outputs=7
)
REGRESS = TaskSpec(
    "toy_regress", input="features", input_features=2, target="sequence", loss="mse", num_outputs=1
)


def tokens(shape, seed=0):
    return jax.random.randint(jax.random.key(seed), shape, 0, 7, jnp.int32)


def small(cell, **kw):
    return ModelConfig(cell=cell, width=8, state_size=4, num_layers=2, **kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_builds_for_sequence_and_step_targets(family):
    for spec, shape in ((CLASSIFY, (2, 3)), (LM, (2, 5, 7))):
        model = sequence_model(small(family), spec)
        params = model.init(jax.random.key(0))
        out, carries = model.apply(params, tokens((2, 5)), lengths=jnp.array([5, 3], jnp.int32))
        assert out.shape == shape and out.dtype == jnp.float32
        assert len(carries) == 2 and np.all(np.isfinite(out))
    model = sequence_model(small(family), REGRESS)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 2), jnp.float32)
    assert model.apply(model.init(jax.random.key(0)), xs)[0].shape == (2, 1)


@pytest.mark.parametrize(
    "family,pooling", [("lstm", "attention"), ("lru", "mean"), ("mamba", "last")]
)
def test_padded_batch_classifies_like_each_sequence_alone(family, pooling):
    model = sequence_model(small(family, pooling=pooling, bidirectional=family == "lstm"), CLASSIFY)
    params = model.init(jax.random.key(0))
    apply = jax.jit(model.apply)  # one compilation per shape instead of one per operation
    x = tokens((3, 6))
    lengths = jnp.array([6, 4, 2], jnp.int32)
    out, _ = apply(params, x, lengths=lengths)
    for b in range(3):
        alone, _ = apply(params, x[b : b + 1, : int(lengths[b])])
        assert_trees_close(out[b : b + 1], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["gru", "s5", "mingru"])
def test_chunks_with_carried_state_equal_the_whole_sequence(family):
    """The forward pass of truncated BPTT is exactly the forward pass of full BPTT."""
    model = sequence_model(small(family), LM)
    params = model.init(jax.random.key(0))
    x = tokens((2, 9))
    whole, final = model.apply(params, x)
    first, carries = model.apply(params, x[:, :4])
    second, carries = model.apply(params, x[:, 4:], carries=carries)
    assert_trees_close(jnp.concatenate([first, second], axis=1), whole, rtol=1e-5, atol=1e-5)
    assert_trees_close(carries, final, rtol=1e-5, atol=1e-5)


def test_greedy_sampling_follows_the_full_model():
    model = sequence_model(small("lstm"), LM)
    params = model.init(jax.random.key(0))
    prompt = tokens((2, 3))
    out = sample(model, params, prompt, 6, jax.random.key(1), top_k=1)
    assert out.shape == (2, 6) and out.dtype == jnp.int32
    # With top_k=1 every sampled token is the argmax of the model run over everything before it.
    logits, _ = model.apply(params, jnp.concatenate([prompt, out[:, :-1]], axis=1))
    np.testing.assert_array_equal(jnp.argmax(logits[:, 2:], axis=-1), out)
    hot = sample(model, params, prompt, 6, jax.random.key(2), temperature=5.0)
    assert hot.shape == (2, 6) and np.all((hot >= 0) & (hot < 7))


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match=r"model\.cell must be one of"):
        sequence_model(ModelConfig(cell="transformer"), CLASSIFY)
    with pytest.raises(ValueError, match=r"model\.bidirectional must be False"):
        sequence_model(ModelConfig(bidirectional=True), LM)
    with pytest.raises(ValueError, match=r"model\.state_size must be even for s5"):
        sequence_model(ModelConfig(cell="s5", state_size=5), CLASSIFY)
    with pytest.raises(ValueError, match=r"model.dropout must be a float in \[0, 1\)"):
        sequence_model(ModelConfig(dropout=1.5), CLASSIFY)
    with pytest.raises(ValueError, match="model must be a token-to-token step model"):
        model = sequence_model(ModelConfig(), CLASSIFY)
        sample(model, model.init(jax.random.key(0)), tokens((1, 2)), 3, jax.random.key(0))
