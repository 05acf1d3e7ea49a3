"""Sequential images: classify a real image read one value per step (MNIST-1D; Fashion-MNIST).

Two tasks of the long-range suite (`recurrax.tasks`), both ``input="features"`` with one float per
step, ``target="sequence"`` (one class of 10 per sequence, read after the last step), cross-entropy
loss, metric accuracy, baseline ``0.1`` (chance over 10 balanced classes).

**mnist1d** — MNIST-1D (Greydanus 2020, "Scaling down deep learning", arXiv:2011.14439): ten 1-D
digit templates, randomly padded, dilated, scaled, translated, noised, sheared and resampled to 40
points. A sequence is the 40 values of one example, ``inputs (B, 40, 1)`` float32 (standardised
over the data set by the generator). The data come from the ``mnist1d`` package's
``make_dataset(args)``, which generates them offline from ``args`` (its ``get_dataset()``
downloads, and is never called). The default ``args`` give the standard 4000 train / 1000 test
examples; the last ``valid_size`` training examples form the valid split. The generated arrays
are cached as ``<data root>/mnist1d/mnist1d-<hash of the args>.npz`` (see
:func:`mnist1d_cache_name`); a cached file is used without the package. Published: a GRU reaches
about 91% test accuracy. The small and the full configuration are the same (the published set).

**seq_fashion_mnist** — Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747) pixel by
pixel, as sequential MNIST (Le, Jaitly & Hinton 2015, arXiv:1504.00941): each 28×28 image is
(optionally) zero-padded to ``side × side`` (``pad_to = side²``; the image sits in the middle, the
extra row/column of an odd margin at the bottom/right) and read in raster order (row by row, left
to right), one pixel per step, scaled to ``[0, 1]``: ``inputs (B, pad_to, 1)`` float32. Every step
is real input (the border is part of the image), so ``lengths`` is ``None``. With
``permuted=True`` the ``pad_to`` steps are reordered by one fixed permutation,
``np.random.default_rng(permutation_seed).permutation(pad_to)`` (step ``t`` shows pixel
``perm[t]``), the same for every split and every run. The IDX files (Debian package
``dataset-fashion-mnist``, installed in ``/usr/share/datasets/fashion-mnist``) are found as
:mod:`recurrax.tasks.data_files` describes. Splits: ``train`` is the first ``train_size``
examples of the 60k training file, ``valid`` its last ``valid_size`` (disjoint from train),
``test`` the first ``test_size`` of the 10k test file. Small: 10k/1k/2k at 784 steps; full:
55k/5k/10k at 1024 steps (32×32).

Batches (both tasks): for ``split="train"`` the batch at ``step`` is slice ``step mod E`` of epoch
``step // E``'s shuffle of the training examples, ``E = N // batch_size`` batches per epoch (the
remainder of an epoch is dropped); the shuffle is ``batch_rng(seed, "train", epoch)
.permutation(N)``. For ``valid`` and ``test`` the batch at ``step`` holds examples
``step·B, …, step·B + B − 1`` in file order, modulo ``N`` (the seed is not used): to score every
example once, run ``ceil(N / B)`` steps and keep the first ``N`` predictions
(:func:`mnist1d_num_examples`, :func:`fashion_num_examples` give ``N``).

Sources and deliberate differences:

- **mnist1d**: S. Greydanus 2020, "Scaling down Deep Learning" (arXiv:2011.14439): the data set
  and its standard split (4000 train / 1000 test, 40 steps). Differences: the valid split is the
  last ``valid_size`` (400) of the 4000 training examples, so models train on 3600, not 4000; the
  data are regenerated offline by the package's ``make_dataset`` from the default arguments (the
  published procedure) instead of read from the released file, and are not checked here to be
  identical to it byte for byte.
- **seq_fashion_mnist**: the protocol is sequential (and permuted) MNIST of Le, Jaitly & Hinton
  2015, §4.2, one pixel per step in raster order (784 steps), a fixed random permutation for the
  permuted variant, applied to the Fashion-MNIST images of Xiao, Rasul & Vollgraf 2017. Fashion-
  MNIST is harder than MNIST, so accuracies are not comparable with published sequential-MNIST
  numbers. Further differences: the small setting trains on the first 10k of the 60k training
  images and tests on the first 2k of the 10k test images; the full setting keeps the last 5k
  training images for validation (training on 55k) and pads the images to 32×32, so its
  sequences have 1024 steps instead of 784; the permutation is the one drawn from
  ``permutation_seed`` (the published permutation is not specified).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import math
import os
import random
import tempfile
import types
from pathlib import Path

import ml_collections
import numpy as np
from ml_collections import config_dict

from recurrax.tasks.data_files import (
    MissingDataError,
    candidate_dirs,
    find_data_dir,
    missing_data_error,
    search_roots,
)
from recurrax.tasks.spec import SPLITS, Batch, Task, TaskSpec, batch_rng
from recurrax.validation import check_choice, check_positive_int

NUM_CLASSES = 10

# --------------------------------------------------------------------------------------------
# Which examples a batch holds.


@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    return batch_rng(seed, "train", epoch).permutation(num_examples)


def example_indices(
    num_examples: int, seed: int, split: str, step: int, batch_size: int
) -> np.ndarray:
    """The ``(B,)`` indices of the examples in one batch (the rule in the module docstring)."""
    check_choice("split", split, SPLITS)
    check_positive_int("batch_size", batch_size)
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"step must be a non-negative integer; got {step!r}")
    if split == "train":
        if batch_size > num_examples:
            raise ValueError(
                f"batch_size must be at most the {num_examples} training examples; got {batch_size}"
            )
        epoch, position = divmod(int(step), num_examples // batch_size)
        order = _epoch_order(int(seed), epoch, num_examples)
        return order[position * batch_size : (position + 1) * batch_size]
    return (int(step) * batch_size + np.arange(batch_size)) % num_examples


# --------------------------------------------------------------------------------------------
# IDX files (LeCun's MNIST format): magic 0x00 0x00 <type code> <rank>, then <rank> big-endian
# uint32 sizes, then the values in C order, big-endian.

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (gzip-compressed when its name ends in ``.gz``) into a native-order array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise ValueError(
            f"{path} must be an IDX file (magic 00 00 <type> <rank>); got header {data[:4].hex()}"
        )
    rank = data[3]
    header = 4 + 4 * rank
    shape = tuple(int(n) for n in np.frombuffer(data[4:header], ">u4"))
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path} must hold {expected} bytes of data for shape {shape}; got {len(data) - header}"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------------------------
# Fashion-MNIST pixel by pixel.

FASHION_SUBDIR = "fashion-mnist"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_HOW_TO_GET = "install it with `apt-get install dataset-fashion-mnist`"


def _idx_file(directory: Path, base: str) -> Path | None:
    for name in (base, base + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _fashion_present(directory: Path) -> bool:
    return all(_idx_file(directory, b) for pair in FASHION_FILES.values() for b in pair)


@functools.lru_cache(maxsize=2)
def _load_fashion_files(paths: tuple[str, ...], stamps: tuple) -> dict[str, np.ndarray]:
    del stamps  # part of the cache key only: a replaced file is read again
    arrays = {}
    for (part, _), images_path, labels_path in zip(
        FASHION_FILES.items(), paths[::2], paths[1::2], strict=True
    ):
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{images_path} must hold uint8 images (N, rows, cols); got {images.dtype} {images.shape}"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"{labels_path} must hold {images.shape[0]} labels; got shape {labels.shape}"
            )
        if labels.size and labels.max() >= NUM_CLASSES:
            raise ValueError(f"{labels_path} must hold labels in [0, 9]; got max {labels.max()}")
        arrays[part] = (images, labels.astype(np.int32))
    return arrays


def fashion_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory that holds the four Fashion-MNIST IDX files (``.gz`` or not).

    Raises:
      MissingDataError: when they are in no searched directory.
    """
    return find_data_dir(
        "Fashion-MNIST",
        FASHION_SUBDIR,
        _fashion_present,
        data_dir=data_dir,
        how_to_get=FASHION_HOW_TO_GET,
    )


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> dict[str, tuple]:
    """``{"train": (images, labels), "test": (images, labels)}``: uint8 ``(N, 28, 28)``, int32 ``(N,)``.

    Raises:
      MissingDataError: when the four IDX files (``.gz`` or not) are in no searched directory.
    """
    directory = fashion_mnist_dir(data_dir)
    paths = tuple(
        str(_idx_file(directory, base)) for pair in FASHION_FILES.values() for base in pair
    )
    stamps = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths)
    return _load_fashion_files(paths, stamps)


def fashion_small_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "data_dir": config_dict.placeholder(str),
            "train_size": 10_000,
            "valid_size": 1_000,
            "test_size": 2_000,
            "pad_to": 784,
            "permuted": False,
            "permutation_seed": 0,
        }
    )


def fashion_full_config() -> ml_collections.ConfigDict:
    config = fashion_small_config()
    config.train_size, config.valid_size, config.test_size = 55_000, 5_000, 10_000
    config.pad_to = 1024
    return config


def _check_fashion_config(config) -> int:
    """Validates ``config`` and returns the padded side."""
    for name in ("train_size", "valid_size", "test_size", "pad_to"):
        check_positive_int(name, config[name])
    side = math.isqrt(config.pad_to)
    if side * side != config.pad_to or side < 28:
        raise ValueError(
            f"pad_to must be side² for an integer side >= 28 (784 = 28², 1024 = 32²); "
            f"got {config.pad_to!r}"
        )
    if not isinstance(config.permuted, bool):
        raise ValueError(f"permuted must be a bool; got {config.permuted!r}")
    if isinstance(config.permutation_seed, bool) or not isinstance(config.permutation_seed, int):
        raise ValueError(f"permutation_seed must be an integer; got {config.permutation_seed!r}")
    return side


def fashion_spec(config) -> TaskSpec:
    _check_fashion_config(config)
    return TaskSpec(
        name="seq_fashion_mnist", input="features", input_features=1, target="sequence",
        loss="cross_entropy", num_outputs=NUM_CLASSES, metric="accuracy", baseline=0.1,
    )  # fmt: skip


def _fashion_split(config, split: str) -> tuple[np.ndarray, np.ndarray]:
    data = load_fashion_mnist(config.data_dir)
    train_images, train_labels = data["train"]
    n_train = train_images.shape[0]
    if config.train_size + config.valid_size > n_train:
        raise ValueError(
            f"train_size + valid_size must be at most {n_train} (the training file's examples); "
            f"got {config.train_size} + {config.valid_size}"
        )
    if split == "train":
        return train_images[: config.train_size], train_labels[: config.train_size]
    if split == "valid":
        start = n_train - config.valid_size
        return train_images[start:], train_labels[start:]
    test_images, test_labels = data["test"]
    if config.test_size > test_images.shape[0]:
        raise ValueError(
            f"test_size must be at most {test_images.shape[0]} (the test file's examples); "
            f"got {config.test_size}"
        )
    return test_images[: config.test_size], test_labels[: config.test_size]


def fashion_num_examples(config, split: str) -> int:
    """The number of examples in ``split`` (``N`` of the batching rule)."""
    check_choice("split", split, SPLITS)
    _check_fashion_config(config)
    return {"train": config.train_size, "valid": config.valid_size, "test": config.test_size}[split]


@functools.lru_cache(maxsize=4)
def fashion_permutation(pad_to: int, permutation_seed: int = 0) -> np.ndarray:
    """The fixed pixel order of permuted Fashion-MNIST: step ``t`` shows pixel ``perm[t]``."""
    perm = np.random.default_rng(permutation_seed).permutation(pad_to)
    perm.flags.writeable = False  # shared by every caller (cached)
    return perm


def images_to_sequences(images: np.ndarray, side: int) -> np.ndarray:
    """``(B, rows, cols)`` uint8 → ``(B, side², 1)`` float32 in ``[0, 1]``: centred, padded, raster order."""
    _, rows, cols = images.shape
    if side < max(rows, cols):
        raise ValueError(f"pad_to must be at least {rows}×{cols} images; got side {side}")
    top, left = (side - rows) // 2, (side - cols) // 2
    padded = np.zeros((images.shape[0], side, side), np.float32)
    padded[:, top : top + rows, left : left + cols] = images / np.float32(255)
    return padded.reshape(images.shape[0], side * side, 1)


def fashion_batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch: ``inputs (B, pad_to, 1)`` float32 in ``[0, 1]``, ``targets (B,)`` int32 classes."""
    side = _check_fashion_config(config)
    check_choice("split", split, SPLITS)
    images, labels = _fashion_split(config, split)
    idx = example_indices(images.shape[0], seed, split, step, batch_size)
    inputs = images_to_sequences(images[idx], side)
    if config.permuted:
        inputs = inputs[:, fashion_permutation(config.pad_to, config.permutation_seed)]
    return Batch(inputs, labels[idx])


FASHION_TASK = Task(
    "seq_fashion_mnist", fashion_spec, fashion_batch, fashion_small_config, fashion_full_config
)

# --------------------------------------------------------------------------------------------
# MNIST-1D.

MNIST1D_SUBDIR = "mnist1d"
MNIST1D_PACKAGE = "mnist1d==0.0.2.post1"
MNIST1D_LENGTH = 40
# The generator's arguments: the defaults of mnist1d 0.0.2's get_dataset_args() (without its
# download URL). num_samples, train_split and seed come from the config; the rest are fixed.
MNIST1D_ARGS = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": MNIST1D_LENGTH,
    "seed": 42,
}


def mnist1d_small_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "data_dir": config_dict.placeholder(str),
            "num_samples": 5000,
            "train_split": 0.8,
            "data_seed": 42,
            "valid_size": 400,
        }
    )


def mnist1d_full_config() -> ml_collections.ConfigDict:
    return mnist1d_small_config()  # the published data set is already small


def mnist1d_generation_args(config) -> dict:
    """The arguments given to ``mnist1d``'s ``make_dataset`` for ``config``."""
    check_positive_int("num_samples", config.num_samples)
    if config.num_samples < 2 * NUM_CLASSES:
        raise ValueError(f"num_samples must be at least 20; got {config.num_samples!r}")
    if not isinstance(config.train_split, float | int) or not 0 < config.train_split < 1:
        raise ValueError(f"train_split must be a float in (0, 1); got {config.train_split!r}")
    if isinstance(config.data_seed, bool) or not isinstance(config.data_seed, int):
        raise ValueError(f"data_seed must be an integer; got {config.data_seed!r}")
    check_positive_int("valid_size", config.valid_size)
    n_train = int((config.num_samples // NUM_CLASSES * NUM_CLASSES) * config.train_split)
    if config.valid_size >= n_train:
        raise ValueError(
            f"valid_size must be less than the {n_train} generated training examples; "
            f"got {config.valid_size!r}"
        )
    return dict(
        MNIST1D_ARGS,
        num_samples=config.num_samples,
        train_split=float(config.train_split),
        seed=config.data_seed,
    )


def mnist1d_cache_name(config) -> str:
    """The cache file's name, ``mnist1d-<first 16 hex digits of sha256(args as JSON)>.npz``."""
    args = json.dumps(mnist1d_generation_args(config), sort_keys=True)
    return f"mnist1d-{hashlib.sha256(args.encode()).hexdigest()[:16]}.npz"


@contextlib.contextmanager
def _global_rng_preserved():
    """make_dataset seeds the global ``random`` and ``np.random`` states; restore the caller's."""
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002  (the legacy global state, on purpose)
        random.setstate(py_state)


def _generate_mnist1d(args: dict, name: str, data_dir) -> dict[str, np.ndarray]:
    try:
        from mnist1d.data import make_dataset  # optional: imported only when no cache is found
    except ImportError:
        raise missing_data_error(
            f"MNIST-1D ({name}, or the mnist1d package that generates it offline)",
            candidate_dirs(MNIST1D_SUBDIR, data_dir),
            f"install the generator with `pip install {MNIST1D_PACKAGE}`",
            data_dir,
        ) from None
    with _global_rng_preserved():
        data = make_dataset(types.SimpleNamespace(**args))
    return {
        "x": np.asarray(data["x"], np.float32),
        "y": np.asarray(data["y"], np.int32),
        "x_test": np.asarray(data["x_test"], np.float32),
        "y_test": np.asarray(data["y_test"], np.int32),
    }


def _save_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes ``path`` via a temporary file and a rename, so readers never see half a file.

    Best effort: a directory we may not write to only means that nothing is cached.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(name: str, args_json: str, roots: tuple[str, ...], data_dir):
    files = [d / name for d in candidate_dirs(MNIST1D_SUBDIR, data_dir)]
    for path in files:
        if path.is_file():
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in ("x", "y", "x_test", "y_test")}
            break
    else:
        arrays = _generate_mnist1d(json.loads(args_json), name, data_dir)
        _save_atomically(Path(roots[0]) / MNIST1D_SUBDIR / name, arrays)
    for x, y in ((arrays["x"], arrays["y"]), (arrays["x_test"], arrays["y_test"])):
        if x.ndim != 2 or x.shape[1] != MNIST1D_LENGTH or y.shape != x.shape[:1]:
            raise ValueError(
                f"MNIST-1D data must be x (N, {MNIST1D_LENGTH}) with y (N,); "
                f"got {x.shape} and {y.shape} from {name}"
            )
    return arrays


def load_mnist1d(config) -> dict[str, np.ndarray]:
    """``{"x", "y", "x_test", "y_test"}`` for ``config``: from the cache, else generated and cached.

    Raises:
      MissingDataError: when no cached file is found and the ``mnist1d`` package is not installed.
    """
    args = mnist1d_generation_args(config)
    roots = tuple(str(r) for r in search_roots(config.data_dir))
    data_dir = None if config.data_dir is None else str(config.data_dir)
    return _mnist1d_arrays(
        mnist1d_cache_name(config), json.dumps(args, sort_keys=True), roots, data_dir
    )


def _mnist1d_split(config, split: str) -> tuple[np.ndarray, np.ndarray]:
    data = load_mnist1d(config)
    n_train = data["x"].shape[0] - config.valid_size
    if split == "train":
        return data["x"][:n_train], data["y"][:n_train]
    if split == "valid":
        return data["x"][n_train:], data["y"][n_train:]
    return data["x_test"], data["y_test"]


def mnist1d_num_examples(config, split: str) -> int:
    """The number of examples in ``split`` (``N`` of the batching rule)."""
    check_choice("split", split, SPLITS)
    return _mnist1d_split(config, split)[1].shape[0]


def mnist1d_spec(config) -> TaskSpec:
    mnist1d_generation_args(config)
    return TaskSpec(
        name="mnist1d", input="features", input_features=1, target="sequence",
        loss="cross_entropy", num_outputs=NUM_CLASSES, metric="accuracy", baseline=0.1,
    )  # fmt: skip


def mnist1d_batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch: ``inputs (B, 40, 1)`` float32, ``targets (B,)`` int32 classes."""
    check_choice("split", split, SPLITS)
    x, y = _mnist1d_split(config, split)
    idx = example_indices(x.shape[0], seed, split, step, batch_size)
    return Batch(x[idx][:, :, None], y[idx])


MNIST1D_TASK = Task(
    "mnist1d", mnist1d_spec, mnist1d_batch, mnist1d_small_config, mnist1d_full_config
)

__all__ = [
    "FASHION_TASK",
    "MNIST1D_TASK",
    "MissingDataError",
    "example_indices",
    "fashion_mnist_dir",
    "fashion_num_examples",
    "fashion_permutation",
    "load_fashion_mnist",
    "load_mnist1d",
    "mnist1d_cache_name",
    "mnist1d_num_examples",
    "read_idx",
]
