"""Planner rule 4 at its boundary: a kept winner is its offset ``0..r^2-1`` inside the window,
``uint8`` while ``r^2 <= 256`` (up to ``r = 16``), ``uint16`` from ``r = 17``."""

from __future__ import annotations

import numpy as np
import pytest

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.planner import rules
from sparsecnn.planner.execute import winner_offsets, winner_positions


@pytest.mark.parametrize("r, dtype", [(15, np.uint8), (16, np.uint8), (17, np.uint16)])
def test_winner_offsets_dtype_and_last_offset(r: int, dtype: type) -> None:
    net = Network((r, r, 1), [ConvLayer(1, h=1, r=r, activation="identity"), FullLayer(2)])
    ly = net.conv[0]
    X = np.zeros((r * r, 2))
    X[-1, 0] = 5.0                  # instance 0: the maximum at the window's last entry, offset r^2 - 1
    X[r, 1] = 5.0                   # instance 1: at (row 0, column 1), offset r
    theta = net.pack([np.ones((1, 1)), np.eye(2, 1)], [np.zeros(1), np.zeros(2)])
    Ws, bs = net.unpack(theta)
    winners = ly.winners(X * Ws[0][0, 0])
    k = winner_offsets(ly, winners)
    assert rules.winners_dtype(r) == np.dtype(dtype)
    assert k.dtype == np.dtype(dtype)
    assert k[:, 0].tolist() == [r * r - 1] and k[:, 1].tolist() == [r]
    assert np.array_equal(winner_positions(ly, k), winners)


def test_uint8_holds_every_offset_at_r_16() -> None:
    offsets = np.arange(16 * 16)
    assert np.array_equal(offsets.astype(rules.winners_dtype(16)), offsets)
    assert rules.winners_dtype(16).itemsize == 1 and rules.winners_dtype(17).itemsize == 2
