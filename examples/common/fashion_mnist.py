"""Fashion-MNIST from local IDX files (Debian's dataset-fashion-mnist package
installs them under /usr/share/datasets/fashion-mnist); nothing downloads."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# Mean and standard deviation of the training images' pixels in [0, 1].
MEAN, STD = 0.2860, 0.3530


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array of its declared type and shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (header {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {array.size} values")
    return array.reshape(shape)


def load(split: str, data_dir: Path = DEFAULT_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images [N, 1, 28, 28] (float32) and labels [N] (int64) of 'train' or 'test'."""
    prefix = {"train": "train", "test": "t10k"}[split]
    data_dir = Path(data_dir)
    images_path = data_dir / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.exists():
        raise FileNotFoundError(
            f"{images_path} not found: install Debian's dataset-fashion-mnist (make does) or pass --data DIR"
        )
    images = read_idx(images_path)
    labels = read_idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return (x - MEAN) / STD, torch.from_numpy(labels.astype(np.int64))
