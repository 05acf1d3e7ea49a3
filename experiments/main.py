"""Trains one model on one task: flags in, ``train_and_evaluate(config, workdir)`` out.

    python experiments/main.py --config=experiments/configs/adding.py:lstm --workdir=/tmp/run \
        --config.task.length=200 --config.train.num_steps=2000

Running the same command again resumes from the latest checkpoint in ``--workdir``.
For a multi-host run, give every process the same ``--coordinator_address`` and
``--num_processes`` and its own ``--process_id``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for experiments.configs

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "experiments/configs/<task>.py:<family>[,full]", lock_config=True
)
flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and results")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host runs)")
flags.DEFINE_integer("num_processes", None, "number of processes (multi-host runs)")
flags.DEFINE_integer("process_id", None, "this process's index (multi-host runs)")
flags.mark_flags_as_required(["config", "workdir"])


def _load_config_file(value: str):
    """The config that ``--config=<file>[:<arg>]`` names, loaded as ``config_flags`` loads it."""
    path, _, arg = value.partition(":")
    spec = importlib.util.spec_from_file_location("_config_file", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def override_error(argv) -> str | None:
    """A one-line message for the first ``--config.<field>=...`` that names no field of the config
    given by ``--config=...`` (``None`` when every override names a field)."""
    from recurrax.run import unknown_field

    config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    overrides = [a[len("--config.") :].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    if config_arg is None or not overrides:
        return None
    try:
        config = _load_config_file(config_arg)
    except Exception as error:  # the flag parser reports a bad config file itself
        return f"--config={config_arg}: {type(error).__name__}: {error}"
    if config is None:
        return None
    for path in overrides:
        message = unknown_field(config, path)
        if message is not None:
            return message
    return None


def parse_flags(argv):
    """Parses the flags; a bad ``--config`` or ``--config.*`` flag ends in one line on stderr."""
    message = override_error(argv)
    if message is None:
        try:
            return FLAGS(argv)
        except flags.Error as error:
            message = str(error)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            message = f"bad config flag: {type(error).__name__}: {error}"
    print(f"{Path(argv[0]).name}: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it renames at INFO
    import jax

    if FLAGS.coordinator_address is not None:
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    from recurrax.run import Experiment, train_and_evaluate

    try:
        Experiment(FLAGS.config)  # reject a bad config at start-up, before anything is written
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    results = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    test = results["test"]
    print(
        f"{results['task']} / {results['cell']}: test "
        + ", ".join(f"{k} {v:.4f}" for k, v in test.items())
    )


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
