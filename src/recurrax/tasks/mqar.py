"""Multi-query associative recall, MQAR (Arora et al. 2023, Zoology): recall capacity vs state size.

Source: S. Arora, S. Eyuboglu et al., "Zoology: Measuring and Improving Recall in Efficient
Language Models" (arXiv:2312.04927, 2023; ICLR 2024), §3 (the MQAR definition) and Fig. 2 (the
sweep of sequence length, number of pairs and model width), with the synthetic generator
``multiquery_ar`` released with the paper, whose sampling rule is restated below.

A sequence has length ``L`` (``config.length``), ``P`` key–value pairs (``config.num_pairs``) and a
vocabulary of ``V`` tokens (``config.vocab_size``, up to 8192 and beyond); ``H = V // 2``. Two
variants, chosen by ``config.variant``:

**variant="zoology"** (the default; the paper's definition):

- positions ``0 .. 2P-1``: the pairs ``k_1 v_1 k_2 v_2 … k_P v_P``. The keys are ``P`` distinct
  tokens drawn uniformly without replacement from ``1 .. H-1`` (the lower half of the vocabulary,
  0 excluded) and the values ``P`` distinct tokens drawn uniformly without replacement from
  ``H .. V-1`` (the upper half), in random order;
- the rest of the sequence, ``2P .. L-1``, has ``S = (L - 2P) // 2`` query slots, one every other
  position: slot ``g`` (``g = 0 .. S-1``) is position ``2P + 2g``, ``2g`` steps after the
  key–value block. Every key is queried exactly once. The slots are drawn without replacement
  from the power law ``p_g ∝ (g + 1) ** (power_a - 1)`` (:func:`gap_probabilities`;
  ``config.power_a``, default 0.01, so ``p_g`` falls almost as ``1 / (g + 1)`` and short gaps
  dominate; ``power_a = 1`` is uniform): the slot of pair 1's key is drawn from ``p``, the slot of
  pair 2's key from ``p`` restricted to the slots still free and renormalised, and so on (this is
  what the released generator's ``numpy.random.choice(..., replace=False, p=p)`` does, and what
  an exponential race ``argsort(Exp(1) / p)`` gives in one vectorised draw). So the first pairs
  tend to be queried soonest;
- every other position (the odd offsets after the block, the unused slots, and the last position
  when ``L - 2P`` is odd) holds a filler token drawn uniformly from the whole vocabulary
  ``0 .. V-1`` (the generator's ``random_non_queries=True``). A filler may therefore equal one of
  the example's keys or values: it is noise, not a query, and it is never scored. With
  ``config.random_non_queries = False`` the filler is ``0`` instead (the setting of the released
  Fig. 2 configuration files).

**variant="uniform"** (this library's earlier generator, kept so that earlier results can be
reproduced exactly): keys distinct from ``1 .. H-1`` as above; values drawn independently with
replacement from ``H .. V-1`` (repeats allowed); each key queried once, in random order, at ``P``
distinct positions drawn uniformly from all of ``2P .. L-1``; filler ``0`` everywhere else.
``power_a`` and ``random_non_queries`` do not apply.

In both variants the target at a query position is the value paired with that key (the next
token of the underlying text ``… k v …``); ``loss_mask`` is true exactly at the ``P`` query
positions, and targets elsewhere are 0 and do not count (the generator's label ``-100``). Targets
use the input ids (``num_outputs = V``). Metric ``"accuracy"`` over the query positions; chance
is ``1 / (V - H)``, one over the number of possible values.

Deliberate differences from the paper's setting:

- data are drawn afresh at every ``(seed, split, step)`` (:func:`recurrax.tasks.batch_rng`), an
  unlimited stream; the paper trains on a fixed pool (100,000 training and 3,000 test examples
  per setting in the released Fig. 2 configuration) for several epochs;
- the small configuration uses ``V = 512`` (to keep the embedding small on a CPU); the full one
  uses the paper's ``V = 8192``. The released generator also asserts ``V > L`` and an even ``L``;
  neither is needed here and neither is enforced (an odd ``L`` leaves its last position to the
  filler);
- the default fills with random tokens (the generator's default) although the released Fig. 2
  configuration sets ``random_non_queries=False`` (filler ``0``); set it to match that figure.

The Zoology sweep of ``(L, P)`` is in ``config.settings`` and the model widths in
``config.model_hint.hidden_sizes``; accuracy should rise with the recurrent state size.
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np

from recurrax.tasks.spec import Batch, Task, TaskSpec, batch_rng
from recurrax.validation import check_choice, check_positive_int

FILLER = 0  # the filler of variant="uniform" (and of random_non_queries=False)
SETTINGS = ((64, 4), (128, 8), (256, 16), (512, 64))  # (length, num_pairs), Zoology Fig. 2
VARIANTS = ("zoology", "uniform")
DEFAULT_VARIANT = "zoology"
DEFAULT_POWER_A = 0.01  # the Zoology generator's default, used for its Fig. 2


def _config(vocab_size: int, length: int, num_pairs: int, settings) -> dict:
    return {
        "vocab_size": vocab_size,
        "length": length,
        "num_pairs": num_pairs,
        "settings": settings,
        "variant": DEFAULT_VARIANT,
        "power_a": DEFAULT_POWER_A,
        "random_non_queries": True,
    }


def small_config() -> ml_collections.ConfigDict:
    """Vocabulary 512, (L, P) = (64, 4); the small sweep is (64, 4) and (128, 8)."""
    return ml_collections.ConfigDict(_config(512, 64, 4, SETTINGS[:2]))


def full_config() -> ml_collections.ConfigDict:
    """Vocabulary 8192, (L, P) = (512, 64); sweep up to (256, 16)/(512, 64), d ∈ {64 … 512}."""
    config = _config(8192, 512, 64, SETTINGS)
    config["model_hint"] = {"hidden_sizes": (64, 128, 256, 512)}
    return ml_collections.ConfigDict(config)


def _options(config) -> tuple[str, float, bool]:
    """``(variant, power_a, random_non_queries)``; configs without these fields get the defaults."""
    variant = config.get("variant", DEFAULT_VARIANT)
    check_choice("config.variant", variant, VARIANTS)
    power_a = config.get("power_a", DEFAULT_POWER_A)
    if (
        isinstance(power_a, bool)
        or not isinstance(power_a, int | float)
        or not math.isfinite(power_a)
        or power_a <= 0
    ):
        raise ValueError(f"config.power_a must be a finite positive float; got {power_a!r}")
    random_fill = config.get("random_non_queries", True)
    if not isinstance(random_fill, bool):
        raise ValueError(f"config.random_non_queries must be a bool; got {random_fill!r}")
    return variant, float(power_a), random_fill


def _sizes(config, variant: str) -> tuple[int, int, int]:
    """``(V, L, P)`` after checking them."""
    vocab_size, length, num_pairs = config.vocab_size, config.length, config.num_pairs
    check_positive_int("config.vocab_size", vocab_size)
    check_positive_int("config.length", length)
    check_positive_int("config.num_pairs", num_pairs)
    num_keys = vocab_size // 2 - 1
    if num_pairs > num_keys:
        raise ValueError(
            f"config.num_pairs must be at most {num_keys} (distinct keys 1..vocab_size//2-1 for "
            f"vocab_size={vocab_size}); got {num_pairs!r}"
        )
    if variant == "zoology" and length < 4 * num_pairs:
        raise ValueError(
            f"config.length must be at least {4 * num_pairs} (4 * config.num_pairs: the pairs, "
            f"then a query slot every other position, one per key) for variant='zoology'; "
            f"got {length!r}"
        )
    if length < 3 * num_pairs:
        raise ValueError(
            f"config.length must be at least {3 * num_pairs} (3 * config.num_pairs: the pairs, "
            f"then one query per key); got {length!r}"
        )
    return int(vocab_size), int(length), int(num_pairs)


def spec(config) -> TaskSpec:
    variant, _, _ = _options(config)
    vocab_size, _, _ = _sizes(config, variant)
    return TaskSpec(
        name="mqar",
        input="tokens",
        vocab_size=vocab_size,
        target="step",
        loss="cross_entropy",
        num_outputs=vocab_size,
        metric="accuracy",
        baseline=1 / (vocab_size - vocab_size // 2),
    )


def gap_probabilities(num_slots: int, power_a: float = DEFAULT_POWER_A) -> np.ndarray:
    """``(num_slots,)`` float64: ``p_g ∝ (g + 1) ** (power_a - 1)``, the chance of query slot ``g``.

    Slot ``g`` is position ``2P + 2g``. This is the distribution of the first drawn slot (that of
    pair 1's key); later pairs draw from it restricted to the free slots (the module docstring).
    """
    check_positive_int("num_slots", num_slots)
    weights = np.arange(1, num_slots + 1, dtype=np.float64) ** (float(power_a) - 1.0)
    return weights / weights.sum()


def _smallest_in_order(draws: np.ndarray, k: int) -> np.ndarray:
    """``(rows, k)``: per row, the indices of the ``k`` smallest ``draws``, smallest first."""
    smallest = np.argpartition(draws, k - 1, axis=1)[:, :k]
    # argpartition leaves the k smallest unordered; order them by their draws.
    order = np.argsort(np.take_along_axis(draws, smallest, axis=1), axis=1)
    return np.take_along_axis(smallest, order, axis=1)


def _first_of_permutations(rng: np.random.Generator, rows: int, n: int, k: int) -> np.ndarray:
    """``(rows, k)``: per row, the first ``k`` entries of a random permutation of ``0..n-1``."""
    return _smallest_in_order(rng.random((rows, n)), k)


def _uniform_batch(rng, batch_size: int, vocab_size: int, length: int, num_pairs: int):
    """variant="uniform": the earlier generator, draw for draw (do not reorder the draws)."""
    half = vocab_size // 2
    keys = 1 + _first_of_permutations(rng, batch_size, half - 1, num_pairs)
    values = rng.integers(half, vocab_size, (batch_size, num_pairs))
    inputs = np.full((batch_size, length), FILLER, np.int32)
    inputs[:, 0 : 2 * num_pairs : 2] = keys
    inputs[:, 1 : 2 * num_pairs : 2] = values
    # Query j (for key j) goes to a random free position; the positions are in random order, so
    # the keys are queried in random order.
    query_at = 2 * num_pairs + _first_of_permutations(
        rng, batch_size, length - 2 * num_pairs, num_pairs
    )
    return inputs, keys, values, query_at


def _zoology_batch(
    rng, batch_size: int, vocab_size: int, length: int, num_pairs: int, power_a: float, fill: bool
):
    """variant="zoology": the paper's generator (module docstring)."""
    half = vocab_size // 2
    keys = 1 + _first_of_permutations(rng, batch_size, half - 1, num_pairs)
    values = half + _first_of_permutations(rng, batch_size, vocab_size - half, num_pairs)
    num_slots = (length - 2 * num_pairs) // 2
    # Sequential sampling without replacement in proportion to p is an exponential race: slot g
    # finishes at Exp(1) / p_g, and the slots in order of finishing are the successive draws.
    race = rng.standard_exponential((batch_size, num_slots)) / gap_probabilities(num_slots, power_a)
    slots = _smallest_in_order(race, num_pairs)  # slots[:, j]: the query slot of key j
    if fill:
        inputs = rng.integers(0, vocab_size, (batch_size, length), dtype=np.int32)
    else:
        inputs = np.full((batch_size, length), FILLER, np.int32)
    inputs[:, 0 : 2 * num_pairs : 2] = keys
    inputs[:, 1 : 2 * num_pairs : 2] = values
    return inputs, keys, values, 2 * num_pairs + 2 * slots


def batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch, deterministic given ``(seed, split, step)``.

    Returns:
      ``Batch(inputs (B, L) int32, targets (B, L) int32, loss_mask (B, L) bool)``, the mask true
      at the ``P`` query positions.
    """
    variant, power_a, random_fill = _options(config)
    vocab_size, length, num_pairs = _sizes(config, variant)
    check_positive_int("batch_size", batch_size)
    rng = batch_rng(seed, split, step)
    if variant == "uniform":
        inputs, keys, values, query_at = _uniform_batch(
            rng, batch_size, vocab_size, length, num_pairs
        )
    else:
        inputs, keys, values, query_at = _zoology_batch(
            rng, batch_size, vocab_size, length, num_pairs, power_a, random_fill
        )
    np.put_along_axis(inputs, query_at, keys.astype(np.int32), axis=1)
    targets = np.zeros((batch_size, length), np.int32)
    np.put_along_axis(targets, query_at, values.astype(np.int32), axis=1)
    loss_mask = np.zeros((batch_size, length), bool)
    np.put_along_axis(loss_mask, query_at, True, axis=1)
    return Batch(inputs, targets, loss_mask)


TASK = Task("mqar", spec, batch, small_config, full_config)
