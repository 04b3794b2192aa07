"""The MNIST / Fashion-MNIST reader of the experiments."""

import numpy as np
import pytest

from experiments._data import load_mnist


def test_load_mnist_reads_idx(data_dir):
    X, y = load_mnist(data_dir, dataset="mnist", split="test", n_samples=500, random_state=0)
    assert X.shape == (500, 784) and X.min() >= 0 and X.max() <= 1
    assert set(np.unique(y)) <= set(range(10)) and len(np.unique(y)) == 10
    with pytest.raises(FileNotFoundError, match="nonexistent"):
        load_mnist(data_dir / "nonexistent")


def test_data_folder_from_the_environment_or_beside_the_checkout(monkeypatch, tmp_path):
    from pathlib import Path

    from experiments._data import data_files, default_data_dir

    monkeypatch.setenv("GENDIST_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    assert data_files(None, "fashion-mnist", "test") == (
        tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz",
        tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz",
    )
    monkeypatch.delenv("GENDIST_DATA_DIR")
    checkout = Path(__file__).resolve().parents[2]
    assert default_data_dir() == checkout.parent / "shared" / "data"
