"""The sweep: the same six trials per family and task, the choice by validation loss, and its use."""

import dataclasses
import json

import pytest
from experiments import suites, sweep
from experiments.suites import RunSpec

from test_compare import _tiny_variants


def test_every_family_gets_six_trials_around_its_recipe():
    (row,) = [v for v in suites.SWEPT_SUITES["small"]() if v.name == "adding-T100"]
    for family, recipe_lr in (("lru", 5e-3), ("s5", 1e-2), ("gru", 3e-3), ("mingru", 2e-3)):
        trials = sweep.trial_specs(row, family)
        assert len(trials) == 6
        for trial, spec in trials:
            config = spec.config()
            assert config.optimizer.learning_rate == pytest.approx(trial["learning_rate"])
            assert config.train.num_steps == 1500 and config.train.seed == 0
            for key, value in (trial["cell_options"] or {}).items():
                assert config.model.cell_options[key] == value
        rates = sorted({t["learning_rate"] for t, _ in trials})
        factors = sweep.FINE_LR_FACTORS if family == "mingru" else sweep.LR_FACTORS
        assert rates == pytest.approx([recipe_lr * f for f in factors], rel=1e-5)
        assert rates[0] == pytest.approx(recipe_lr / 3, rel=1e-5)  # both grids: 1/3 to 3×
        assert rates[-1] == pytest.approx(recipe_lr * 3, rel=1e-5)
    rings = [spec.config().model.cell_options.r_min for _, spec in sweep.trial_specs(row, "lru")]
    assert rings == [0.999] * 3 + [0.9] * 3  # the recipe's ring, then the alternative


def test_one_row_per_task_is_swept():
    variants = suites.SWEPT_SUITES["small"]()
    rows = sweep.rows_to_sweep(variants, None)
    names = [v.name for v in rows]
    assert len({v.task for v in rows}) == len(rows) == len({v.task for v in variants})
    assert "adding-T100" in names and "adding-T200" not in names
    assert "parity" in names and "parity-negative" not in names
    assert all(v.group == "main" for v in rows)
    assert [v.name for v in sweep.rows_to_sweep(variants, ["adding", "parity"])] == [
        "adding-T100",
        "parity",
    ]
    assert [v.name for v in sweep.rows_to_sweep(variants, ["copy_memory-T50"])] == [
        "copy_memory-T50"
    ]
    with pytest.raises(ValueError, match=r"--tasks must be among .*unknown \['adding-T200'\]"):
        sweep.rows_to_sweep(variants, ["adding-T200"])
    with pytest.raises(ValueError, match="one row per task"):
        sweep.sweep(variants[:2], ["lstm"], "unused", log=lambda line: None)


def _trial(lr, loss, init=None):
    return {"learning_rate": lr, "cell_options": init, "loss": loss}


def test_choice_is_the_lowest_validation_loss_with_ties_to_the_recipe():
    init = {"forget_bias": 3.0}
    chosen = sweep.choose([_trial(1e-3, 0.5), _trial(2e-3, 0.2), _trial(2e-3, 0.1, init)], 2e-3)
    assert chosen == {"learning_rate": 2e-3, "cell_options": init}
    assert sweep.choose([_trial(1e-3, 0.2), _trial(2e-3, 0.2)], 2e-3)["learning_rate"] == 2e-3
    tied = sweep.choose([_trial(2e-3, 0.2, init), _trial(2e-3, 0.2)], 2e-3)
    assert tied["cell_options"] is None
    failed = sweep.choose([_trial(1e-3, float("nan")), _trial(2e-3, None), _trial(4e-3, 0.3)], 2e-3)
    assert failed["learning_rate"] == 4e-3
    assert sweep.choose([_trial(1e-3, None)], 2e-3) == {"learning_rate": 2e-3, "cell_options": None}


def test_a_tiny_sweep_and_the_suite_runs_at_the_chosen_settings(tmp_path):
    row = _tiny_variants()[0]  # adding-T12, rnn and lstm, 6 steps
    choices = sweep.sweep([row], ["lstm"], tmp_path / "runs", log=lambda line: None)
    assert choices["adding"]["row"] == "adding-T12"
    record = choices["adding"]["families"]["lstm"]
    assert record["recipe"] == 3e-3 and len(record["trials"]) == 6
    assert all(t["loss"] is not None and t["loss"] > 0 for t in record["trials"])
    best = min(record["trials"], key=lambda t: t["loss"])
    assert record["chosen"]["learning_rate"] == best["learning_rate"]
    assert record["chosen"]["cell_options"] == best["cell_options"]
    assert sum(t["cell_options"] == {"forget_bias": 3.0} for t in record["trials"]) == 3

    stored = {"tasks": choices, "command": "sweep", "date": "today", "machine": "cpu"}
    text = "\n".join(sweep.markdown("test", stored))
    assert "| adding (adding-T12) | lstm | 0.003 |" in text and "forget_bias=3" in text

    # The choice applies to every row of the task, and only to the swept family.
    path = tmp_path / "sweep.json"
    chosen = {"learning_rate": 7e-4, "cell_options": {"forget_bias": 3.0}}
    entry = {"row": "adding-T12", "families": {"lstm": {**record, "chosen": chosen}}}
    path.write_text(json.dumps({"tasks": {"adding": entry}}))
    longer = dataclasses.replace(row, name="adding-T24", task_config={"length": 24})
    parity = _tiny_variants()[1]
    swept = suites.apply_sweep([row, longer, parity], path)
    for variant in swept[:2]:
        config = RunSpec(variant, "lstm", 0).config()
        assert config.optimizer.learning_rate == 7e-4
        assert config.model.cell_options.forget_bias == 3.0
        assert RunSpec(variant, "rnn", 0).config().optimizer.learning_rate == 3e-3  # not swept
    assert swept[2] == parity  # another task
    assert suites.apply_sweep([row], tmp_path / "missing.json") == (row,)
