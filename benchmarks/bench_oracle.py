"""Oracle benchmark: ``sparsecnn.check`` on the PyTorch MNIST example's network.

The model is the one of PyTorch's MNIST example (``pytorch/examples``,
``mnist/main.py``), written as that example writes it -- a class whose
``forward`` calls ``F.relu``, ``F.max_pool2d``, ``torch.flatten`` and
``Dropout`` modules: ``Conv2d(1, 32, 3)``, ReLU, ``Conv2d(32, 64, 3)``, ReLU,
2x2 max pooling, ``Dropout(0.25)``, flatten, ``Linear(9216, 128)``, ReLU,
``Dropout(0.5)``, ``Linear(128, 10)``: 1,199,882 parameters.  The example ends
in ``F.log_softmax`` (its loss is ``nll_loss``), which sparsecnn reads as part
of the cross-entropy loss (``--loss cross-entropy``, the default); with
``--loss squared`` the model returns the logits ``z^{L+1}`` and the check uses
the squared loss.

The data are the first ``--images`` images (default 64) of
the packaged ``mnist-demo.mat`` (``sparsecnn.datasets``) scaled by 1/255 (random pixels when the file
is absent), in float64 (``--dtype float32`` for the other).  The script times
``check(model, x, y, products="grad,Gv")`` (``--products``) -- tracing, the
PyTorch side, the float64 reference, the per-entry rounding-error bounds and
the comparison -- and, for comparison, the same check with ``rtol=`` given (the
normwise rule, no bounds).  It prints the median wall time over ``--repeats``
runs after a warm-up, and the report's verdict.

Run ``python benchmarks/bench_oracle.py`` (``--images 64 --repeats 3``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _data import DATA, load  # noqa: E402  (benchmarks/ is on sys.path)

from sparsecnn.interop import X_to_torch
from sparsecnn.oracle import check, default_rtol


def pytorch_mnist_example_model(dtype: Any, log_softmax: bool = True) -> Any:
    """PyTorch's MNIST example network, in eval mode (without its final log_softmax if ``log_softmax`` is False)."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812  (PyTorch's own spelling)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.conv1(x))
            x = F.relu(self.conv2(x))
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = self.dropout2(x)
            x = self.fc2(x)
            return F.log_softmax(x, dim=1) if log_softmax else x     # the example returns F.log_softmax

    torch.manual_seed(0)
    return Net().to(dtype).eval()


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=64, help="instances (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up (default 3)")
    p.add_argument("--products", default="grad,Gv", help="products to check (default grad,Gv)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--data", type=Path, default=DATA / "mnist-demo.mat")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss", choices=("cross-entropy", "squared"), default="cross-entropy",
                   help="cross-entropy: the example as written, ending in F.log_softmax (default); "
                        "squared: the model returns the logits")
    args = p.parse_args(argv)

    dtype = getattr(torch, args.dtype)
    model = pytorch_mnist_example_model(dtype, log_softmax=args.loss == "cross-entropy")
    n = sum(int(q.numel()) for q in model.parameters())
    X, y, source = load(args.data, args.images, args.seed)
    x = X_to_torch((28, 28, 1), X, dtype=dtype)
    eps = float(torch.finfo(dtype).eps)
    print(f"PyTorch MNIST example network ({n:,} parameters, {args.dtype}); data: {source}, "
          f"l = {x.shape[0]}; {args.loss} loss; products = {args.products}; median of {args.repeats} runs "
          f"after a warm-up",
          flush=True)

    cases: list[tuple[str, dict[str, Any]]] = [("check (per-entry bounds)", {}),
                                               ("check (normwise rtol, no bounds)", {"rtol": default_rtol(eps)})]
    rows = []
    for name, kw in cases:
        report = check(model, x, y, products=args.products, seed=args.seed, **kw)     # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            check(model, x, y, products=args.products, seed=args.seed, **kw)
            times.append(time.perf_counter() - t)
        rows.append((name, statistics.median(times), len(report.rows), report.verdict()))
        print(f"  {name}: {', '.join(f'{s:.2f} s' for s in times)}", flush=True)
    print("\n| what | time (s) | rows | verdict |")
    print("|---|---:|---:|---|")
    for name, t, k, verdict in rows:
        print(f"| {name} | {t:.2f} | {k} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
