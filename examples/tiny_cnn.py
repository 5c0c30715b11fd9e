"""A small PyTorch CNN for ``sparsecnn check`` (the README's "Use it" section).

Run from the repository root::

    sparsecnn check --model examples/tiny_cnn.py:model --input-shape 1,8,8 --products grad,Jv,JTv,Gv

``sparsecnn check`` imports this file, calls :func:`model` and compares the model's output, ``f``, its
gradient and the products ``J v``, ``J^T u``, ``G v`` with sparsecnn's float64 reference, entry by entry.
"""

from __future__ import annotations


def model():
    """Conv 3x3 (4 filters, padding 1), ReLU, 2x2 max pooling, then a full layer with 10 outputs, in float64."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
    ).double()
