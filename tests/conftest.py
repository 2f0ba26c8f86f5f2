"""Shared test fixtures.

Importing advrobust first selects Keras 2 for TensorFlow (it sets TF_USE_LEGACY_KERAS;
attacks/backend.py imports TensorFlow).
Integration tests read the real datasets: Fashion-MNIST from Debian's
dataset-fashion-mnist package, MNIST from ADVROBUST_DATA_DIR (.ci/run points it at
../shared/datasets). A missing dataset fails those tests loudly; it is never skipped.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import advrobust  # noqa: F401  (selects Keras 2 before TensorFlow loads)

REPO = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    """Write ``array`` (uint8) as a gzipped IDX file with the given magic number."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())
    return path


def write_fake_split(folder: Path, split: str, n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write a tiny valid split (images, labels) in the original file names into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    prefix = "train" if split == "train" else "t10k"
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    return images, labels


def run_python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process (for import-order tests)."""
    import os

    full_env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, cwd=REPO, timeout=300)


def ok_stdout(result: subprocess.CompletedProcess) -> str:
    """The stdout of a subprocess that must have exited 0 (else its stderr's end fails the test)."""
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture
def isolated_lookup(tmp_path, monkeypatch):
    """No dataset anywhere: empty env dir, no system dirs, an empty Keras cache."""
    from advrobust.data import loading

    monkeypatch.delenv("ADVROBUST_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(loading, "SYSTEM_DIRS", (tmp_path / "system",))
    loading._read.cache_clear()
    return tmp_path


@pytest.fixture(scope="session")
def trained_mnist_cnn():
    """The reference CNN (Conv32-Conv64-MaxPool-Dense128-Dense10, no dropout) trained for
    two epochs on 6000 MNIST images, and the first 500 test images: (model, x, y).

    Accuracy is about 96-97%; training takes about 15 s on 2 CPU cores.
    """
    from advrobust import data, models, training

    training.set_seed(0)
    x, y = data.load("mnist", "train", download=False)
    x_test, y_test = data.load("mnist", "test", download=False)
    model = models.build("cnn", dropout=False, seed=0)
    training.fit(model, data.make_dataset(x[:6000], y[:6000], batch_size=64, shuffle=True, seed=0), None,
                 epochs=2, verbose=0)
    return model, x_test[:500], y_test[:500]
