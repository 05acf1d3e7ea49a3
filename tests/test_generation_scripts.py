"""The generation scripts: a language model's continuations under every strategy
(``experiments/generate.py``) and a translator's attention maps (``experiments/attention_map.py``),
on runs trained for a few steps into a temp workdir."""

import jax
import jax.numpy as jnp
import numpy as np
from experiments import attention_map, generate
from experiments.configs.common import make_config

import recurrax.tasks as tasks
from recurrax.models import ModelConfig, language_model_step, prompt_cache, sequence_model
from recurrax.run import restore_evaluated, stored_config, train_and_evaluate

SPEC = tasks.TaskSpec("lm", "tokens", "step", "cross_entropy", 12, vocab_size=12)


def test_continuations_follow_each_strategy_exactly():
    model = sequence_model(ModelConfig(cell="gru", width=8), SPEC)
    params = model.init(jax.random.key(0))
    prompt = jnp.array([[4, 5, 1]], jnp.int32)
    step_fn = language_model_step(model, params)
    results = generate.continuations(step_fn, prompt_cache(model, params, prompt), 1, 6, 0, 3)
    by_name = {name: (tokens, per_token) for name, tokens, per_token in results}
    assert list(by_name) == [name for name, _, _ in generate.STRATEGIES]
    # Greedy: the argmax of the model run on the whole prompt and continuation, token by token.
    sequence, log_prob = [4, 5, 1], 0.0
    for _ in range(6):
        logits, _ = model.apply(params, jnp.array([sequence], jnp.int32))
        log_probs = np.asarray(jax.nn.log_softmax(logits[0, -1]))
        sequence.append(int(np.argmax(log_probs)))
        log_prob += float(log_probs[sequence[-1]])
    greedy_tokens, greedy_per_token = by_name["greedy"]
    assert greedy_tokens.tolist() == sequence[3:]
    np.testing.assert_allclose(greedy_per_token, log_prob / 6, rtol=1e-5)
    assert by_name["beam search"][1] >= greedy_per_token - 1e-6  # a beam keeps greedy's path
    again = generate.continuations(step_fn, prompt_cache(model, params, prompt), 1, 6, 0, 3)
    for (_, a, _), (_, b, _) in zip(results, again, strict=True):
        assert a.tolist() == b.tolist()  # a fixed seed gives the same text
    other = generate.continuations(step_fn, prompt_cache(model, params, prompt), 1, 6, 7, 3)
    sampled = [n for n, s, _ in generate.STRATEGIES if s == "sample"]
    assert any(
        by_name[n][0].tolist() != t.tolist() for n, t, _ in other if n in sampled
    )  # another seed, another sample


def test_attention_maps_are_the_weights_of_greedy_decoding(tmp_path):
    config = make_config(
        "reverse",
        "gru",
        num_steps=2,
        eval_every=2,
        log_every=1,
        eval_batches=1,
        test_batches=1,
        batch_size=4,
    )
    config.model.width = 8
    config.seq2seq.attention = "dot"
    config.task.max_length = config.task.eval_max_length = 6
    train_and_evaluate(config, tmp_path / "run", progress=False)
    experiment, params = restore_evaluated(stored_config(tmp_path / "run"), tmp_path / "run")
    maps = attention_map.attention_maps(experiment, params, 2)
    batch = experiment.batch("test", 0, batch_size=2)
    seq2seq = experiment.model.encoder_decoder
    for b, (src, generated, weights) in enumerate(maps):
        assert src.tolist() == batch.inputs[b, : batch.lengths[b]].tolist()
        assert weights.shape == (len(generated), len(src))
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
        # Step the decoder by hand on its own argmax: the same tokens and the same weights.
        state = seq2seq.encode(
            params, jnp.asarray(batch.inputs[b : b + 1]), jnp.asarray(batch.lengths[b : b + 1])
        )
        token = jnp.array([2], jnp.int32)
        for t in range(len(generated)):
            state, logits, w = seq2seq.decode_step(params, state, token)
            token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            assert int(token[0]) == generated[t]
            np.testing.assert_allclose(np.asarray(w[0, : len(src)]), weights[t], atol=1e-5)
    path = attention_map.plot(maps, ["s"] * 20, ["t"] * 20, "title", tmp_path / "map.png")
    assert path.stat().st_size > 0
