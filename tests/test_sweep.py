"""The learning-rate sweep: equal trials per family, the choice by validation loss, and its use."""

import json

import pytest
from experiments import suites, sweep
from experiments.suites import RunSpec

from test_compare import _tiny_variants


def test_every_family_gets_the_same_trials_around_its_recipe_rate():
    (lru_row,) = [v for v in suites.SWEPT_SUITES["small"]() if v.name == "adding-T100"]
    for family, recipe_lr in (("lru", 5e-3), ("s5", 1e-2), ("gru", 3e-3), ("mamba", 2e-3)):
        trials = sweep.trial_specs(lru_row, family)
        assert [lr for lr, _ in trials] == pytest.approx([recipe_lr * f for f in sweep.LR_FACTORS])
        for lr, spec in trials:
            config = spec.config()
            assert config.optimizer.learning_rate == pytest.approx(lr)
            assert config.train.num_steps == 1500 and config.train.seed == 0
    ring = sweep.trial_specs(lru_row, "lru")[0][1].config().model.cell_options
    assert ring.r_min == 0.999  # the recipe's initialisation is kept in every trial


def test_choice_is_the_lowest_validation_loss_with_ties_to_the_recipe():
    assert sweep.choose({1e-3: 0.5, 2e-3: 0.2, 4e-3: 0.3}, 2e-3) == 2e-3
    assert sweep.choose({1e-3: 0.1, 2e-3: 0.2, 4e-3: 0.3}, 2e-3) == 1e-3
    assert sweep.choose({1e-3: 0.2, 2e-3: 0.2, 4e-3: 0.3}, 2e-3) == 2e-3
    assert sweep.choose({1e-3: float("nan"), 2e-3: None, 4e-3: 0.3}, 2e-3) == 4e-3
    assert sweep.choose({1e-3: None, 2e-3: None}, 2e-3) == 2e-3


def test_a_tiny_sweep_and_the_suite_runs_at_the_chosen_rate(tmp_path):
    row = _tiny_variants()[0]  # adding-T12, rnn and lstm, 6 steps
    choices = sweep.sweep([row], ["lstm"], tmp_path / "runs", log=lambda line: None)
    choice = choices["adding-T12"]["lstm"]
    assert choice["recipe"] == 3e-3 and len(choice["trials"]) == len(sweep.LR_FACTORS)
    assert all(loss is not None and loss > 0 for loss in choice["trials"].values())
    best = min(choice["trials"], key=choice["trials"].get)
    assert choice["chosen"] == pytest.approx(float(best))

    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"rows": {"adding-T12": {"lstm": {**choice, "chosen": 7e-4}}}}))
    (swept,) = suites.apply_sweep([row], path)
    assert RunSpec(swept, "lstm", 0).config().optimizer.learning_rate == 7e-4
    assert RunSpec(swept, "rnn", 0).config().optimizer.learning_rate == 3e-3  # not swept
    assert suites.apply_sweep([row], tmp_path / "missing.json") == (row,)
