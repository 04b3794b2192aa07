"""The MNIST / Fashion-MNIST images of the experiments: a reader of IDX files and their folder.

Nothing is downloaded: the original ``*-idx?-ubyte.gz`` files lie in ``mnist/`` and
``fashion-mnist/`` under the data folder, ``$GENDIST_DATA_DIR`` when set, else
``../shared/data`` beside the checkout (see :func:`default_data_dir`); the experiments take
another one from their ``data_dir`` parameter.
"""

from __future__ import annotations

import gzip
import numbers
import os
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["DATASETS", "default_data_dir", "data_files", "require_data", "load_idx", "load_mnist"]

#: the two image datasets, by their folder names
DATASETS = ("mnist", "fashion-mnist")

#: IDX type codes (third byte of the magic number) and their element types
IDX_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def default_data_dir() -> Path:
    """Folder of the MNIST / Fashion-MNIST files: ``$GENDIST_DATA_DIR`` when set, else
    ``../shared/data`` beside the checkout's root folder."""
    env = os.environ.get("GENDIST_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def data_files(data_dir=None, dataset: str = "mnist", split: str = "train") -> tuple[Path, Path]:
    """Paths of the image and label files of one split.

    Parameters
    ----------
    data_dir : str or Path, optional
        Default :func:`default_data_dir`.
    dataset : {"mnist", "fashion-mnist"}
    split : {"train", "test"}

    Returns
    -------
    images, labels : Path
    """
    if dataset not in DATASETS:
        raise ValueError(f'dataset must be "mnist" or "fashion-mnist", got {dataset!r}.')
    if split not in ("train", "test"):
        raise ValueError(f'split must be "train" or "test", got {split!r}.')
    folder = (Path(data_dir) if data_dir is not None else default_data_dir()) / dataset
    prefix = "train" if split == "train" else "t10k"
    return (
        folder / f"{prefix}-images-idx3-ubyte.gz",
        folder / f"{prefix}-labels-idx1-ubyte.gz",
    )


def require_data(data_dir, datasets, split: str = "train") -> None:
    """Check that the files of ``split`` of every one of ``datasets`` are there.

    Raises
    ------
    FileNotFoundError
        Naming the first missing file and how to point to the data folder.
    """
    for dataset in datasets:
        for path in data_files(data_dir, dataset, split):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found; set GENDIST_DATA_DIR or the data_dir parameter to the "
                    "folder that holds mnist/ and fashion-mnist/."
                )


def load_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into an array.

    Parameters
    ----------
    path : str or Path
        ``*.gz`` files are decompressed.

    Returns
    -------
    array : ndarray
        Shape and dtype from the file's header (uint8 for MNIST).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()}).")
    dtype, ndim = np.dtype(IDX_TYPES[data[2]]), data[3]
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path} holds {len(data)} bytes, but its header {shape} implies {expected}."
        )
    return np.frombuffer(data, dtype, offset=offset).reshape(shape)


def load_mnist(
    data_dir=None,
    *,
    dataset: str = "mnist",
    split: str = "train",
    n_samples: int | None = None,
    random_state=None,
):
    """MNIST or Fashion-MNIST images as flat vectors in [0, 1], with their labels.

    Parameters
    ----------
    data_dir : str or Path, optional
        Folder holding ``mnist/`` and ``fashion-mnist/`` with the original ``*-idx?-ubyte.gz``
        files; default :func:`default_data_dir`.
    dataset : {"mnist", "fashion-mnist"}
    split : {"train", "test"}
    n_samples : int, optional
        A random subset of this size (without replacement), all images when None.
    random_state : int, RandomState instance or None
        Seed of the subset.

    Returns
    -------
    X : ndarray of shape (n_samples, 784), float64 in [0, 1]
    y : ndarray of shape (n_samples,), int64 in 0..9
    """
    image_file, label_file = data_files(data_dir, dataset, split)
    images, labels = load_idx(image_file), load_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{image_file.parent}: images {images.shape} and labels {labels.shape} do not match."
        )
    index = np.arange(len(images))
    if n_samples is not None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
            raise TypeError(f"n_samples must be an integer, got {n_samples!r}.")
        if not 1 <= n_samples <= len(images):
            raise ValueError(
                f"n_samples={n_samples} is not between 1 and the {len(images)} images."
            )
        index = np.sort(
            check_random_state(random_state).choice(len(images), n_samples, replace=False)
        )
    X = images[index].reshape(len(index), -1).astype(np.float64) / 255.0
    return X, labels[index].astype(np.int64)
