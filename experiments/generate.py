"""Samples from a trained character language model under each decoding strategy.

    python experiments/main.py --config=experiments/configs/char_lm.py:lstm --workdir=/tmp/lm
    python experiments/generate.py --workdir=/tmp/lm --prompt="ROMEO:" --num_chars=200

Loads the checkpoint that the run evaluated (the best by validation loss, by default), reads the
prompt once and continues it with greedy decoding, sampling at several temperatures, top-k,
top-p (nucleus) sampling and beam search (:mod:`recurrax.decoding`), printing each continuation
with its log-probability per character under the model. A fixed ``--seed`` gives the same text.
The character model has no end token, so every continuation has exactly ``--num_chars``
characters (the decoders' ``min_length`` equals their ``max_length``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from recurrax import decoding
from recurrax.models import language_model_step, prompt_cache
from recurrax.run import restore_evaluated, stored_config
from recurrax.tasks import char_lm

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so that importing this module
    in tests never clashes with other entry points' flags)."""
    flags.DEFINE_string(
        "workdir", None, "directory of a finished char_lm run (experiments/main.py)"
    )
    flags.DEFINE_string("prompt", "\n", "text to continue (every character must be in the corpus)")
    flags.DEFINE_integer("num_chars", 200, "characters generated per strategy", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "seed of the sampling strategies")
    flags.DEFINE_integer("beam_size", 4, "beams of the beam search", lower_bound=1)
    flags.mark_flags_as_required(["workdir"])


STRATEGIES = (
    ("greedy", "greedy", {}),
    ("sample, temperature 1.0", "sample", {"temperature": 1.0}),
    ("sample, temperature 0.7", "sample", {"temperature": 0.7}),
    ("top-k 10, temperature 0.8", "sample", {"top_k": 10, "temperature": 0.8}),
    ("top-p 0.9, temperature 0.8", "sample", {"top_p": 0.9, "temperature": 0.8}),
    ("beam search", "beam", {}),
)


def continuations(step_fn, cache, first_token: int, num_tokens: int, seed: int, beam_size: int):
    """``[(strategy, tokens (num_tokens,), log-probability per token)]`` for :data:`STRATEGIES`,
    each continuing ``cache`` (a batch of one) from ``first_token`` (the prompt's last token)."""
    fixed = {"max_length": num_tokens, "min_length": num_tokens, "sos_id": first_token}
    out = []
    for name, strategy, options in STRATEGIES:
        if strategy == "beam":
            options = {"beam_size": beam_size, "num_return": 1}
        key = jax.random.key(seed) if strategy == "sample" else None
        decode = jax.jit(
            lambda cache, key, strategy=strategy, options=options: decoding.decode(
                step_fn, cache, strategy=strategy, key=key, **fixed, **options
            )
        )
        result = decode(cache, key)
        tokens = np.asarray(result.tokens).reshape(-1, num_tokens)[0]
        log_prob = result.log_probs if strategy == "beam" else result.scores
        out.append((name, tokens, float(np.asarray(log_prob).ravel()[0]) / num_tokens))
    return out


def main(argv):
    del argv
    config = stored_config(FLAGS.workdir)
    if config.task.name != "char_lm":
        raise app.UsageError(
            f"--workdir must hold a char_lm run; {FLAGS.workdir} holds a {config.task.name} run"
        )
    unknown = sorted(set(FLAGS.prompt) - set(char_lm.vocabulary(config.task)))
    if unknown:
        raise app.UsageError(f"--prompt has characters outside the corpus: {unknown}")
    experiment, params = restore_evaluated(config, FLAGS.workdir)
    prompt = jnp.asarray(char_lm.encode(config.task, FLAGS.prompt), jnp.int32)[None, :]
    results = continuations(
        language_model_step(experiment.model, params),
        prompt_cache(experiment.model, params, prompt),
        int(prompt[0, -1]),
        FLAGS.num_chars,
        FLAGS.seed,
        FLAGS.beam_size,
    )
    print(f"{config.model.cell} char-LM from {FLAGS.workdir}; prompt {FLAGS.prompt!r}\n")
    for name, tokens, per_char in results:
        print(f"--- {name} (log-probability per character {per_char:.3f})")
        print(FLAGS.prompt + char_lm.decode(config.task, tokens))
        print()


if __name__ == "__main__":
    define_flags()
    app.run(main)
