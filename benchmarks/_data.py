"""What the benchmark scripts share: the mnist-demo network, its data, and a peak-RSS sampler.

The network is the one of simpleNN's ``mnist-demo-layer4.config`` (input 28x28x1;
``ConvLayer(32, h=5, p=2, r=2)``, ``ConvLayer(64, h=3, p=1, r=2)``,
``ConvLayer(64, h=3, p=1, r=2)``, ``FullLayer(10)``); the data are the first ``l``
images of the packaged ``mnist-demo.mat`` (:mod:`sparsecnn.datasets`) read by :func:`sparsecnn.data.load_simplenn_mat`
and scaled by 1/255, or random pixels of the same shape where the file is absent.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from sparsecnn import ConvLayer, FullLayer, Network, datasets
from sparsecnn.data import load_simplenn_mat, scale

DATA = datasets.DIRECTORY
"""simpleNN's data and configuration, packaged in :mod:`sparsecnn.datasets`."""


def mnist_demo_network() -> Network:
    """The network of simpleNN's ``mnist-demo-layer4.config``."""
    return Network((28, 28, 1), [ConvLayer(32, h=5, p=2, r=2), ConvLayer(64, h=3, p=1, r=2),
                                 ConvLayer(64, h=3, p=1, r=2), FullLayer(10)])


def load(path: Path, l: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``X`` (``784 x l``, column ``i`` = ``vec(Z^{1,i})``, scaled by 1/255), labels, and their source."""
    if path.is_file():
        X, y = load_simplenn_mat(path)
        return np.ascontiguousarray(scale(X[:, :l], 1 / 255)), np.asarray(y[:l], dtype=np.int64), str(path)
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(784, l)).astype(np.float64) / 255.0
    return X, rng.integers(0, 10, size=l), "random data (mnist-demo.mat not found)"


class RSSPeak:
    """Peak resident set size above the level at the start, sampled every millisecond."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.peak = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self.page
        except OSError:
            return 0

    def __enter__(self) -> RSSPeak:
        self.start = self.rss()
        self.peak = self.start

        def sample() -> None:
            while not self._stop.wait(0.001):
                self.peak = max(self.peak, self.rss())

        self._t = threading.Thread(target=sample, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())

    @property
    def above_start(self) -> int:
        return self.peak - self.start
