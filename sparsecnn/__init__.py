"""sparsecnn: convolutional neural networks computed as the lecture slides write them.

Every operation is a literal ``scipy.sparse`` matrix (``P_pad``, ``P_phi``,
``P_pool``) and every forward and backward step a sparse or dense product in
``vec``/``mat`` notation.
"""

from . import datasets
from ._version import __version__
from .data import load_simplenn_mat
from .exceptions import (
    ArchitectureError,
    ConfigError,
    DataFormatError,
    DivergenceError,
    InputTypeError,
    LabelError,
    NonFiniteError,
    ShapeError,
    SizeLimitError,
    SparseCNNError,
)
from .interop import from_torch, to_torch
from .layers import ConvLayer, FullLayer
from .network import ForwardCache, Network
from .notation import mat, mat_batch, vec, vec_batch
from .operators import P_pad, P_phi, P_pool, max_pool_winners
from .oracle import check

__all__ = [
    "__version__", "Network", "ConvLayer", "FullLayer", "ForwardCache", "load_simplenn_mat", "datasets",
    "from_torch", "to_torch", "check",
    "vec", "mat", "vec_batch", "mat_batch",
    "P_pad", "P_phi", "P_pool", "max_pool_winners",
    "SparseCNNError", "ShapeError", "NonFiniteError", "LabelError", "ConfigError",
    "ArchitectureError", "DataFormatError", "InputTypeError", "SizeLimitError", "DivergenceError",
]
