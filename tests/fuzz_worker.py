"""The process in which ``tests/test_fuzz.py`` runs sparsecnn's loaders on mutated files.

Started with ``python tests/fuzz_worker.py HEADROOM_BYTES LIMIT_BYTES``: it imports
sparsecnn, sets sparsecnn's size limit (:func:`sparsecnn.config.set_limits`) to
``LIMIT_BYTES``, then caps its own address space at what it uses now plus
``HEADROOM_BYTES`` (``resource.setrlimit(RLIMIT_AS)``, in this process only).  It
then reads one JSON request per line on stdin, ``{"kind": ..., "path": ...}``, runs
that loader, checks what it returned with the loader's own validation, and answers
one JSON line: ``{"outcome": "loaded" | "refused" | "bad", "type": ..., "message": ...}``.
"refused" means one of sparsecnn's exceptions; "bad" anything else, including a
``MemoryError`` from the address-space cap, or a result that fails validation.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import traceback
from typing import Any

import numpy as np

from sparsecnn.config import network_bytes, set_limits
from sparsecnn.data import load_simplenn_mat
from sparsecnn.exceptions import SparseCNNError
from sparsecnn.layers import ConvLayer, FullLayer
from sparsecnn.model_io import load_model, network_to_dict
from sparsecnn.network import Network
from sparsecnn.oracle.golden import check_golden, read_golden


def _vm_size() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _validate_network(net: Any) -> None:
    specs = [ConvLayer(**{k: v for k, v in d.items() if k != "kind"}) if d["kind"] == "conv"
             else FullLayer(**{k: v for k, v in d.items() if k != "kind"}) for d in network_to_dict(net)["layers"]]
    assert network_bytes(net.input_shape, specs).n_params == net.n_params, "size estimate disagrees"
    assert all(v >= 1 for v in net.input_shape)


def run(kind: str, path: str) -> None:
    """Load ``path`` with the loader of ``kind`` and check the result; AssertionError if it is invalid."""
    if kind == "config":
        net = Network.from_simplenn_config(path)
        _validate_network(net)
    elif kind == "mat":
        X, y = load_simplenn_mat(path)
        assert X.dtype == np.float64 and X.ndim == 2 and np.isfinite(X).all(), "X invalid"
        assert y.dtype == np.int64 and y.shape == (X.shape[1],) and (y >= 0).all(), "y invalid"
    elif kind == "model":
        model = load_model(path)
        _validate_network(model.net)
        theta = model.net.check_theta(model.theta)
        assert theta.shape == (model.net.n_params,)
        assert model.mean is None or (model.mean.shape == (model.net.n_input,) and np.isfinite(model.mean).all())
        assert isinstance(model.meta, dict) and math.isfinite(model.scale)
    elif kind == "golden":
        golden = read_golden(path)
        net = golden.net
        _validate_network(net)
        l = golden.l
        assert l >= 1 and golden.X.shape == (net.n_input, l)
        assert golden.theta.shape == golden.grad.shape == golden.Gv.shape == (net.n_params,)
        assert ((golden.y >= 0) & (golden.y < net.n_L)).all()
        for m, w in golden.winners.items():
            assert w.min() >= 0 and w.max() < net.conv[m - 1].n_S
        check_golden(golden, path)                       # a golden file is also a results file
    elif kind == "allocate":                             # the harness's own test of the address-space cap
        np.ones(int(path), dtype=np.uint8)
    else:
        raise ValueError(f"unknown kind {kind!r}")


def main() -> None:
    headroom, limit = int(sys.argv[1]), int(sys.argv[2])
    set_limits(max_bytes=limit)
    cap = _vm_size() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    print(json.dumps({"ready": True, "cap": cap}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            run(request["kind"], request["path"])
            answer = {"outcome": "loaded"}
        except SparseCNNError as exc:
            answer = {"outcome": "refused", "type": type(exc).__name__, "message": str(exc)[:500]}
        except BaseException as exc:  # noqa: BLE001 - every other exception is what the fuzz test reports
            answer = {"outcome": "bad", "type": type(exc).__name__, "message": str(exc)[:500],
                      "traceback": traceback.format_exc()[-3000:]}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
