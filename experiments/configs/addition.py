"""Config for addition of numbers written as text (an encoder–decoder task); the argument after the colon names the model family (and size)."""

from experiments.configs.common import make_config


def get_config(arg=None):
    return make_config("addition", arg)
