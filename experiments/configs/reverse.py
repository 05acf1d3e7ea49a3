"""Config for sequence reversal (an encoder–decoder task; `--config.model.attention=bahdanau` adds attention); the argument after the colon names the model family (and size)."""

from experiments.configs.common import make_config


def get_config(arg=None):
    return make_config("reverse", arg)
