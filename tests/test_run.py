"""Training runs: every family end to end, resume after SIGKILL, data parallelism, faults."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from experiments.configs.common import make_config

import recurrax.tasks as tasks
from conftest import REPO
from recurrax.checkpoint import Checkpoints
from recurrax.models import FAMILIES, LINEAR, ModelConfig
from recurrax.run import (
    LINEAR_DEFAULTS,
    Experiment,
    TrainConfig,
    config_hash,
    default_config,
    evaluate,
    train_and_evaluate,
    unknown_field,
)
from recurrax.tasks.spec import Batch, Task, TaskSpec
from recurrax.train import OptimizerConfig, init_state, make_eval_step, summarize


def tiny(task, family, **train):
    settings = (
        dict(num_steps=2, eval_every=2, log_every=1, eval_batches=1, test_batches=1, batch_size=4)
        | train
    )
    config = make_config(task, family, **settings)
    config.model.width = 8
    config.model.state_size = 4
    return config


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_of_every_family_writes_a_complete_run(family, tmp_path):
    config = tiny("adding", family)
    config.task.length = 12
    results = train_and_evaluate(config, tmp_path, progress=False)
    assert results["steps"] == 2 and results["cell"] == family
    assert np.isfinite(results["test"]["mse"])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["test"] == results["test"]
    assert on_disk["config_hash"] == config_hash(config)
    assert on_disk["config"]["model"]["width"] == 8
    assert (tmp_path / "metrics.jsonl").exists() and (tmp_path / "tensorboard").is_dir()
    assert (
        Checkpoints(
            tmp_path / "checkpoints",
            run_spec=Experiment(config).run_spec(),
        ).latest_step()
        == 2
    )


def test_step_targets_and_test_lengths(tmp_path):
    config = tiny("induction_heads", "gru")
    config.task.length = 16
    config.task.test_lengths = (8, 32)
    results = train_and_evaluate(config, tmp_path, progress=False)
    assert set(results["test_by_length"]) == {"8", "32"}
    assert 0.0 <= results["test"]["accuracy"] <= 1.0


def _nan_task():
    """A user-registered task whose inputs turn to NaN from step 3 on."""

    def spec(config):
        return TaskSpec(
            "nan_after_two",
            input="features",
            input_features=1,
            target="sequence",
            loss="mse",
            num_outputs=1,
            metric="mse",
        )

    def batch(config, seed, split, step, batch_size):
        value = np.nan if (split == "train" and step >= 2) else 1.0
        return Batch(
            np.full((batch_size, 4, 1), value, np.float32), np.ones((batch_size, 1), np.float32)
        )

    return Task("nan_after_two", spec, batch, lambda: None, lambda: None)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    tasks.register(_nan_task(), replace=True)
    config = tiny("adding", "lstm", num_steps=5)
    config.task = {"name": "nan_after_two"}
    config.train.eval_every = 1
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 3.*step 2"):
        train_and_evaluate(config, tmp_path, progress=False)
    assert (
        Checkpoints(
            tmp_path / "checkpoints",
            run_spec=Experiment(config).run_spec(),
        ).latest_step()
        == 2
    )


def _stream_task():
    """A user-registered token stream: 3 consecutive chunks of 5 steps per row, next-token targets."""
    stream = np.random.default_rng(0).integers(0, 7, size=(4, 16)).astype(np.int32)

    def spec(config):
        return TaskSpec(
            "stream_chunks", input="tokens", target="step", loss="cross_entropy",
            num_outputs=7, vocab_size=7, metric="bits_per_char",
        )  # fmt: skip

    def batch(config, seed, split, step, batch_size):
        chunk = slice(5 * (step % 3), 5 * (step % 3) + 5)
        targets = stream[:batch_size, 1:][:, chunk]
        resets = np.zeros(targets.shape, bool)
        resets[:, 0] = step % 3 == 0
        return Batch(
            stream[:batch_size, :-1][:, chunk], targets, np.ones(targets.shape), None, resets
        )

    return Task("stream_chunks", spec, batch, lambda: None, lambda: None), stream


def test_streamed_evaluation_carries_the_state_across_batches():
    """Evaluating 3 chunks with truncated BPTT scores each token from its whole stream: the same
    sums as one pass over the unchunked rows."""
    task, stream = _stream_task()
    tasks.register(task, replace=True)
    config = tiny("adding", "gru", truncated_bptt=True)
    config.task = {"name": "stream_chunks"}
    experiment = Experiment(config)
    params = experiment.model.init(jax.random.key(1))
    eval_step = jax.jit(make_eval_step(experiment.model))
    chunked = evaluate(experiment, params, "valid", 3, eval_step, None)
    whole = Batch(stream[:, :-1], stream[:, 1:], np.ones((4, 15)))
    sums, _ = make_eval_step(experiment.model)(params, whole)
    expected = summarize({k: float(v) for k, v in sums.items()}, experiment.spec)
    assert chunked.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(chunked[key], expected[key], rtol=1e-6, err_msg=key)
    # Without the carried state the chunks are scored from scratch: a different loss.
    config.train.truncated_bptt = False
    plain = evaluate(Experiment(config), params, "valid", 3, eval_step, None)
    assert abs(plain["loss"] - expected["loss"]) > 1e-4


def test_bad_config_is_rejected_before_anything_is_written(tmp_path):
    config = tiny("adding", "lstm")
    config.train.batch_size = 0
    with pytest.raises(ValueError, match=r"config\.train\.batch_size must be a positive integer"):
        train_and_evaluate(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    config = tiny("mqar", "lstm")
    config.model.bidirectional = True
    with pytest.raises(ValueError, match=r"model\.bidirectional must be False"):
        Experiment(config)


def test_a_workdir_of_another_run_is_refused(tmp_path):
    train_and_evaluate(tiny("adding", "gru"), tmp_path, progress=False)
    other = tiny("adding", "gru")
    other.model.width = 16
    with pytest.raises(ValueError, match="width"):
        train_and_evaluate(other, tmp_path, progress=False)


MAIN = [
    sys.executable,
    str(REPO / "experiments" / "main.py"),
    "--config=experiments/configs/adding.py:lstm",
    "--config.task.length=20",
    "--config.model.width=16",
    "--config.train.batch_size=8",
    "--config.train.num_steps=60",
    "--config.train.eval_every=10",
    "--config.train.log_every=10",
    "--config.train.eval_batches=2",
    "--config.train.test_batches=2",
]


def _params(workdir):
    config = make_config("adding", "lstm")
    for flag in MAIN[3:]:
        path, value = flag.removeprefix("--config.").split("=")
        section, field = path.split(".")
        config[section][field] = type(config[section][field])(value)
    experiment = Experiment(config)
    return Checkpoints(workdir / "checkpoints", run_spec=experiment.run_spec()).restore(60)


def test_a_run_killed_with_sigkill_resumes_to_the_same_parameters_and_metrics(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    whole = tmp_path / "whole"
    subprocess.run(
        [*MAIN, f"--workdir={whole}"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*MAIN, f"--workdir={killed}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "30").exists():  # kill once a mid-run checkpoint exists
        assert time.time() < deadline and process.poll() is None, "the run ended too early"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "results.json").exists()
    subprocess.run(
        [*MAIN, f"--workdir={killed}"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    resumed = json.loads((killed / "results.json").read_text())
    uninterrupted = json.loads((whole / "results.json").read_text())
    assert resumed["resumed_from"] >= 30
    assert resumed["test"] == uninterrupted["test"] and resumed["valid"] == uninterrupted["valid"]
    a, b = _params(whole), _params(killed)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):  # params, Adam moments
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


DATA_PARALLEL = """
import json, sys
import jax, numpy as np
sys.path.insert(0, {repo!r})
from experiments.configs.common import make_config
from recurrax.run import train_and_evaluate
config = make_config("mqar", "gru", num_steps=3, eval_every=3, log_every=1, eval_batches=1,
                     test_batches=1, batch_size=8)
config.model.width = 16
results = train_and_evaluate(config, sys.argv[1], progress=False)
print(json.dumps({{"devices": jax.local_device_count(), "test": results["test"]}}))
"""


def test_data_parallel_over_four_devices_gives_the_one_device_numbers(tmp_path):
    script = DATA_PARALLEL.format(repo=str(REPO))
    outputs = {}
    for devices in (1, 4):
        env = dict(
            os.environ,
            JAX_PLATFORMS="cpu",
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / str(devices))],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        outputs[devices] = json.loads(done.stdout.strip().splitlines()[-1])
    assert outputs[1]["devices"] == 1 and outputs[4]["devices"] == 4
    for key, value in outputs[1]["test"].items():
        np.testing.assert_allclose(outputs[4]["test"][key], value, rtol=1e-5)


def test_main_rejects_a_bad_flag_at_start_up(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "main.py"),
            "--config=experiments/configs/adding.py:lstm",
            "--config.model.cell=transformer",
            f"--workdir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "model.cell must be one of" in done.stderr
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------
# One config schema


@pytest.mark.parametrize("family", ["lstm", "lru"])
def test_one_source_of_truth_for_the_defaults(family):
    config = make_config("adding", family)
    assert config.to_dict() == default_config("adding", family).to_dict()
    assert tuple(sorted(config.model)) == tuple(sorted(ModelConfig._fields))
    assert tuple(sorted(config.optimizer)) == tuple(sorted(OptimizerConfig._fields))
    assert tuple(sorted(config.train)) == tuple(sorted(TrainConfig._fields))
    overrides = LINEAR_DEFAULTS if family in LINEAR else {}
    for section, defaults in (
        ("model", ModelConfig(cell=family)._asdict()),
        ("optimizer", OptimizerConfig()._asdict()),
        ("train", TrainConfig()._asdict()),
    ):
        expected = {**defaults, **overrides.get(section, {})}
        expected.pop("cell_options", None)
        actual = {k: v for k, v in config[section].to_dict().items() if k != "cell_options"}
        assert actual == expected, section
    config.train.num_steps = 77
    assert config.optimizer.total_steps == 77  # the schedule follows the steps
    Experiment(config)


def test_unknown_field_names_the_field_and_the_valid_ones():
    config = make_config("adding", "lru")
    assert unknown_field(config, "model.width") is None
    assert unknown_field(config, "nonexistent") == (
        "unknown config field config.nonexistent; the fields of config are: "
        "model, optimizer, task, train"
    )
    message = unknown_field(config, "optimizer.lr")
    assert "config.optimizer.lr" in message and "learning_rate" in message
    assert "is a value" in unknown_field(config, "train.seed.x")
    with pytest.raises(ValueError, match=r"unknown config.train fields \['steps'\]"):
        make_config("adding", "lstm", steps=3)


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--config.nonexistent=1", "model, optimizer, task, train"),
        ("--config.model.widht=8", "state_size, width"),
        ("--config.train.seed=abc", "config.train.seed=abc"),
    ],
)
def test_main_ends_a_bad_config_field_in_one_line(tmp_path, flag, expected):
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "main.py"),
            "--config=experiments/configs/adding.py:lru",
            flag,
            f"--workdir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("main.py: error: ") and expected in lines[0]
    assert flag.split("=")[0].removeprefix("--") in lines[0]
    assert not (tmp_path / "run").exists()


def test_early_stopping_stops_after_patience_validations_without_a_new_best(tmp_path):
    # A learning rate of 1e-12 moves no float32 parameter, so every validation loss equals the
    # first; ties go to the earlier step, so the best stays at step 2 and the run stops when
    # `patience` more validations have passed: at step 2 + 3 * 2 = 8 of 40.
    config = tiny("adding", "gru", num_steps=40, eval_every=2, patience=3)
    config.task.length = 12
    config.optimizer.learning_rate = 1e-12
    results = train_and_evaluate(config, tmp_path, progress=False)
    assert results["stopped_early"] is True
    assert results["steps"] == 8 and results["best_step"] == 2 and results["evaluated_step"] == 2
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["split"] == "valid"] == [2, 4, 6, 8]
    # Resuming a stopped run does not train on.
    again = train_and_evaluate(config, tmp_path, progress=False)
    assert again["steps"] == 8 and again["stopped_early"] is True and again["resumed_from"] == 8


def test_patience_zero_trains_every_step(tmp_path):
    config = tiny("adding", "gru", num_steps=8, eval_every=2, patience=0)
    config.task.length = 12
    config.optimizer.learning_rate = 1e-12
    results = train_and_evaluate(config, tmp_path, progress=False)
    assert results["steps"] == 8 and results["stopped_early"] is False


@pytest.mark.parametrize("evaluate_on", ["best", "last"])
def test_the_test_metrics_are_those_of_the_chosen_checkpoint(evaluate_on, tmp_path):
    # Steps far too large for Adam make the validation loss rise after its first minimum, so
    # the best checkpoint is not the last one.
    config = tiny("adding", "gru", num_steps=8, eval_every=2, keep_checkpoints=4)
    config.train.evaluate_on = evaluate_on
    config.task.length = 12
    config.optimizer.learning_rate = 3.0
    config.optimizer.warmup_steps = 0
    results = train_and_evaluate(config, tmp_path, progress=False)
    experiment = Experiment(config)
    ckpts = Checkpoints(tmp_path / "checkpoints", keep=4, run_spec=experiment.run_spec())
    best = ckpts.best_step()
    assert ckpts.all_steps() == [2, 4, 6, 8] and best != 8 and results["best_step"] == best
    assert results["evaluated_step"] == (best if evaluate_on == "best" else 8)
    template = init_state(experiment.model, experiment.tx, jax.random.key(0))
    eval_step = jax.jit(make_eval_step(experiment.model))
    by_step = {
        step: evaluate(experiment, ckpts.restore(step, template).params, "test", 1, eval_step, None)
        for step in (best, 8)
    }
    assert by_step[best]["mse"] != by_step[8]["mse"]
    assert results["test"] == pytest.approx(by_step[results["evaluated_step"]], rel=1e-6)


def test_bad_early_stopping_settings_are_rejected():
    for field, value, expected in (
        ("patience", -1, "patience must be an int >= 0"),
        ("evaluate_on", "final", "evaluate_on must be one of"),
    ):
        config = tiny("adding", "gru", **{field: value})
        with pytest.raises(ValueError, match=expected):
            Experiment(config)
