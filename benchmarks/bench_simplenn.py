"""simpleNN under Octave beside sparsecnn: the Newton run of ``bench_newton.py``, both timed here.

simpleNN's MATLAB code is not part of this repository: pass the folder that holds its
``cnn_train.m`` with ``--simplenn DIR``.  The script writes a short driver into a temporary
folder, runs it with ``octave-cli`` from ``DIR`` (simpleNN adds its ``cnn`` and ``opt``
folders relative to the working folder), and reads back the wall time of ``cnn_train``
(``tic``/``toc`` around the call, loading excluded), simpleNN's own per-iteration log and the
test accuracy of ``cnn_predict``.  Then sparsecnn's ``newton`` runs with the same settings in
this process (``bench_newton.run``), and a table gives both and the ratio.

Settings on both sides: ``mnist-demo-layer4.config``, Newton (``-s 1``), ``-C 0.01``,
``GNsize``, ``xi``, ``CGmax`` and ``lambda`` at simpleNN's defaults, ``--iter-max`` iterations
(20), seed 111 (simpleNN: ``cnn_train``'s seventh argument).  Pixels: simpleNN's example scales
each image by its own minimum and maximum, sparsecnn's benchmark by 1/255 (the same wherever an
image spans 0 to 255); both then centre on the training mean.  The seeds draw different initial
weights on the two sides, so the iterations differ in detail (the CG counts show how much).

Run ``python benchmarks/bench_simplenn.py --simplenn ~/simpleNN/MATLAB`` (``--dtype float32``
adds a sparsecnn row in single precision, ``--dtype gn-float32`` one in float64 with the
``G v`` products of CG in single precision; ``--skip-sparsecnn`` times simpleNN alone).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_newton  # noqa: E402

DATA = bench_newton.DATA

_DRIVER = """\
more off;
page_screen_output(false);
cd('{dir}');
function X = scaled(X)
  lo = min(X, [], 2);
  hi = max(X, [], 2);
  X = (X - lo) ./ (hi - lo);
end
load('{train}', 'y', 'Z');
Z = scaled(Z);
mu = mean(Z);
Z = Z - mu;
t0 = tic;
model = cnn_train(y, Z, [], [], '{config}', '{options}', {seed});
printf('BENCH train_seconds %.6f\\n', toc(t0));
load('{test}', 'y', 'Z');
[~, acc] = cnn_predict(y, scaled(Z) - mu, model);
printf('BENCH test_accuracy %.6f\\n', acc);
"""


def driver(simplenn: Path, data: Path, iter_max: int, seed: int) -> str:
    """The Octave driver for one simpleNN run (text of a script file)."""
    return _DRIVER.format(dir=simplenn.resolve(), train=(data / "mnist-demo.mat").resolve(),
                          test=(data / "mnist-demo.t.mat").resolve(),
                          config=(data / "mnist-demo-layer4.config").resolve(),
                          options=f"-s 1 -C 0.01 -iter_max {iter_max}", seed=seed)


def parse(output: str) -> dict[str, object]:
    """Time, accuracy, CG counts and the per-iteration log out of the driver's output."""
    found = dict(re.findall(r"^BENCH (\w+) (\S+)$", output, flags=re.M))
    if "train_seconds" not in found or "test_accuracy" not in found:
        raise RuntimeError("simpleNN's output lacks the driver's BENCH lines; its output was:\n" + output[-3000:])
    log = [line for line in output.splitlines() if re.match(r"\s*\d+-iter ", line)]
    cg = [int(m) for line in log for m in re.findall(r"#CG:\s*(\d+)", line)]
    return {"time_s": float(found["train_seconds"]), "test_acc": float(found["test_accuracy"]),
            "cg_iters": cg, "total_cg": sum(cg), "log": log}


def run_simplenn(args: argparse.Namespace, octave: str) -> dict[str, object]:
    version = subprocess.run([octave, "--version"], capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "sparsecnn_bench_driver.m"
        script.write_text(driver(args.simplenn, args.data, args.iter_max, args.seed))
        t = time.perf_counter()
        done = subprocess.run([octave, "--no-gui", "--norc", str(script)], capture_output=True, text=True)
        wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"octave exited with status {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    result = parse(done.stdout)
    result["process_s"] = wall
    result["version"] = version.splitlines()[0] if version else octave
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--simplenn", type=Path, required=True, help="folder holding simpleNN's cnn_train.m")
    p.add_argument("--octave", default="octave-cli", help="the Octave command (default octave-cli)")
    p.add_argument("--seed", type=int, default=111)
    p.add_argument("--iter-max", type=int, default=20)
    p.add_argument("--dtype", choices=["float64", "float32", "gn-float32"], action="append",
                   help="sparsecnn rows to run (repeatable; default float64; gn-float32: float64 "
                        "with the G v products of CG in float32)")
    p.add_argument("--skip-sparsecnn", action="store_true")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if not (args.simplenn / "cnn_train.m").is_file():
        print(f"simpleNN's cnn_train.m not found in {args.simplenn}", file=sys.stderr)
        return 1
    if not (args.data / "mnist-demo.mat").is_file():
        print(f"simpleNN data not found in {args.data}", file=sys.stderr)
        return 1
    octave = shutil.which(args.octave)
    if octave is None:
        print(f"Octave command {args.octave!r} not found", file=sys.stderr)
        return 1
    s = run_simplenn(args, octave)
    if not args.quiet:
        print("\n".join(str(line) for line in s["log"]))  # type: ignore[attr-defined]
    rows = [(f"simpleNN ({s['version']})", s)]
    if not args.skip_sparsecnn:
        for dtype in args.dtype or ["float64"]:
            mixed = dtype == "gn-float32"
            ns = argparse.Namespace(data=args.data, images=None, iter_max=args.iter_max, jacobian="recompute",
                                    dtype="float64" if mixed else dtype, gn_dtype="float32" if mixed else None,
                                    batch_size=1024, quiet=args.quiet)
            name = "float64, G v in float32" if mixed else dtype
            rows.append((f"sparsecnn newton, {name}", bench_newton.run(args.seed, ns)))
    base = float(s["time_s"])  # type: ignore[arg-type]
    print(f"\n{args.iter_max} Newton iterations, seed {args.seed}, mnist-demo-layer4 (times exclude loading)\n")
    print("| implementation | time | test accuracy | CG iterations | simpleNN time / time |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        t = float(r["time_s"])  # type: ignore[arg-type]
        print(f"| {name} | {t:.1f} s | {float(r['test_acc']):.4f} | {r['total_cg']} | "  # type: ignore[arg-type]
              f"{base / t:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
