"""Encoder–decoders in the training stack: transduction tasks end to end, greedy-decoded exact
match, scheduled sampling and label smoothing from the config, and their config checks."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from experiments.configs.common import make_config

from recurrax import decoding
from recurrax.models import DecoderOptions, ModelConfig, sequence_model
from recurrax.run import Experiment, train_and_evaluate
from recurrax.train import init_state, make_eval_step, make_train_step


def tiny(task, family, **train):
    settings = (
        dict(num_steps=2, eval_every=2, log_every=1, eval_batches=1, test_batches=1, batch_size=4)
        | train
    )
    config = make_config(task, family, **settings)
    config.model.width = 8
    config.model.state_size = 4
    config.model.num_layers = 1
    if task in ("reverse", "sort"):
        config.task.max_length = config.task.eval_max_length = 5
    return config


@pytest.mark.parametrize(
    "family, attention",
    [("lstm", "bahdanau"), ("gru", "none"), ("lru", "dot"), ("mamba", "general")],
)
def test_a_transduction_run_writes_exact_match(family, attention, tmp_path):
    config = tiny("reverse", family)
    config.seq2seq.attention = attention
    results = train_and_evaluate(config, tmp_path, progress=False)
    assert results["steps"] == 2 and results["metric"] == "exact_match"
    for split in ("valid", "test"):
        metrics = results[split]
        assert 0.0 <= metrics["exact_match"] <= 1.0
        assert 0.0 <= metrics["generated_token_accuracy"] <= 1.0
        assert np.isclose(metrics["perplexity"], np.exp(metrics["loss"]), rtol=1e-5)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["test"] == results["test"]


def test_exact_match_counts_what_greedy_decoding_generates():
    """The evaluation's counts equal a plain comparison of greedy decoding with the targets;
    a model trained briefly generates some sequences right and some wrong, so both are counted."""
    config = tiny("reverse", "gru", batch_size=16)
    config.seq2seq.attention = "bahdanau"
    config.task.max_length = config.task.eval_max_length = 3
    experiment = Experiment(config)
    model = experiment.model
    state = init_state(model, experiment.tx, jax.random.key(0))
    step = jax.jit(make_train_step(model, experiment.tx))
    for i in range(60):
        batch = jax.tree.map(jnp.asarray, experiment.batch("train", i))
        with jax.numpy_dtype_promotion("standard"):
            state, _ = step(state, batch, jax.random.key(1))
    batch = jax.tree.map(jnp.asarray, experiment.batch("test", 0, batch_size=64))
    sums, _ = make_eval_step(model)(state.params, batch)
    seq2seq = model.encoder_decoder
    out = decoding.greedy(
        seq2seq.step_fn(state.params),
        seq2seq.encode(state.params, batch.inputs, batch.lengths),
        max_length=batch.targets.shape[1],
    )
    tokens, targets, real = map(np.asarray, (out.tokens, batch.targets, batch.loss_mask))
    exact = sum(
        list(tokens[b]) == list(targets[b]) for b in range(len(targets))
    )  # every token, <eos> and the padding after it
    assert float(sums["exact"]) == exact and 0 < exact < len(targets)
    assert float(sums["generated_correct"]) == float(np.sum((tokens == targets) & real))
    assert float(sums["sequences"]) == len(targets)


def test_scheduled_sampling_and_label_smoothing_come_from_the_config():
    config = tiny("reverse", "gru")
    config.seq2seq.attention = "bahdanau"
    config.seq2seq.teacher_schedule = "linear"
    config.seq2seq.teacher_k = 1.0
    config.seq2seq.teacher_c = 0.25
    config.seq2seq.teacher_min = 0.4
    config.seq2seq.label_smoothing = 0.1
    experiment = Experiment(config)
    step = jax.jit(
        make_train_step(
            experiment.model,
            experiment.tx,
            teacher_schedule=experiment.teacher_schedule,
            label_smoothing=0.1,
        )
    )
    state = init_state(experiment.model, experiment.tx, jax.random.key(0))
    probabilities = []
    for i in range(4):
        batch = jax.tree.map(jnp.asarray, experiment.batch("train", i))
        with jax.numpy_dtype_promotion("standard"):
            state, metrics = step(state, batch, jax.random.key(1))
        probabilities.append(float(metrics["teacher_probability"]))
    np.testing.assert_allclose(probabilities, [1.0, 0.75, 0.5, 0.4], rtol=1e-6)


def test_teacher_forcing_config_has_no_schedule():
    assert Experiment(tiny("dates", "lstm")).teacher_schedule is None


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("teacher_schedule", "cosine", "config.seq2seq.teacher_schedule"),
        ("teacher_k", 1.5, "config.seq2seq.teacher_schedule='constant'"),
        ("fed_token", "beam", "config.seq2seq.fed_token"),
        ("label_smoothing", 1.5, "config.seq2seq.label_smoothing"),
        ("attention", "luong", "seq2seq.attention must be one of"),
        ("beam_size", 4, r"config.seq2seq has unknown fields \['beam_size'\]"),
    ],
)
def test_bad_seq2seq_settings_are_rejected(field, value, message):
    config = tiny("reverse", "gru")
    with config.unlocked():
        config.seq2seq[field] = value
    with pytest.raises(ValueError, match=message):
        Experiment(config)


def test_seq2seq_section_only_for_transduction_tasks():
    assert "seq2seq" not in tiny("adding", "gru") and "seq2seq" in tiny("dates", "gru")
    config = tiny("adding", "gru")
    config.seq2seq = tiny("reverse", "gru").seq2seq
    with pytest.raises(ValueError, match=r"config\.seq2seq applies to transduction tasks only"):
        Experiment(config)
    config = tiny("reverse", "gru")
    config.model.dropout = 0.1
    with pytest.raises(ValueError, match=r"model\.dropout must be 0"):
        Experiment(config)


def test_input_feeding_needs_attention_and_a_classic_decoder():
    spec = Experiment(tiny("reverse", "gru")).spec
    model = ModelConfig(cell="gru", width=8)
    with pytest.raises(ValueError, match=r"input_feeding must be False when seq2seq\.attention"):
        sequence_model(model, spec, DecoderOptions(input_feeding=True))
    with pytest.raises(ValueError, match="input_feeding must be False for 'lru'"):
        sequence_model(model._replace(cell="lru"), spec, DecoderOptions("dot", True))
    with pytest.raises(ValueError, match="must be given exactly for transduction tasks"):
        sequence_model(model, Experiment(tiny("adding", "gru")).spec, DecoderOptions())
    built = sequence_model(model._replace(cell="lstm"), spec, DecoderOptions("general", True))
    assert built.encoder_decoder.input_feeding and built.encoder_decoder.attention == "general"
