"""The teaching notebooks in ``notebooks/`` run from top to bottom, are stored without outputs, and
write their formulas in TeX.

Each notebook is executed with nbclient in a ``python3`` kernel that runs *this*
interpreter (a temporary kernelspec put first on ``JUPYTER_PATH``, so a
``python3`` kernel installed elsewhere on the machine is never picked up), with
``notebooks/`` as its working directory, the way a student opens it, and one
BLAS/OpenMP thread (small problems; on a busy machine idle-spinning BLAS threads
made a notebook 15x slower).  The notebooks assert what they show, so a wrong
number fails the test, not only an exception.  Tests skip cleanly where nbclient, nbformat or ipykernel is missing
(``pip install -e '.[test]'`` installs them), and a notebook of ``NEEDS_TORCH`` where PyTorch is missing.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

CELL_TIMEOUT = 120
"""Seconds one cell may take before nbclient gives up."""

NOTEBOOK_BUDGET = 60.0
"""Seconds a whole notebook may take, kernel start included (the teaching promise: under a minute)."""

REQUIRED = ("01_operators", "02_full_layer_gradient", "03_storing_Z_or_S", "04_training",
            "05_checking_pytorch")

NEEDS_TORCH = frozenset({"05_checking_pytorch", "06_checking_functional_models"})
"""Notebooks that run a PyTorch model: their run is skipped where torch cannot be imported."""


def test_the_teaching_notebooks_are_there() -> None:
    names = {p.stem for p in NOTEBOOKS}
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, f"notebooks missing from {NOTEBOOK_DIR}: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", "kernel must be python3"
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"cell {k} of {path.name} has outputs: clear them before saving"
        assert cell.get("execution_count") is None, f"cell {k} of {path.name} has an execution count"


ASCII_FORMULA = re.compile(r"dxi|sum_|⊙|\^\{|_\{|\^T\b|(?<![\w.])(?:sigma|phi)\(|\|\|")
"""A formula written in ASCII inside a code span (``dxi/dS^{m}``, ``sum_i``, ``⊙``, ``||v||``)."""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_markdown_writes_formulas_in_tex(path: Path) -> None:
    """The markdown cells state formulas in TeX (``$...$``, rendered on the site), not in code spans."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    texts = ["".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "markdown"]
    ascii_spans = [span for text in texts for span in re.findall(r"`([^`\n]+)`", text) if ASCII_FORMULA.search(span)]
    assert not ascii_spans, f"{path.name}: formulas in code spans, write them in TeX: {ascii_spans}"
    assert sum(text.count("$") for text in texts) >= 10, f"{path.name}: its markdown cells have hardly any TeX"
    assert all(text.count("$") % 2 == 0 for text in texts), f"{path.name}: a $ without its partner"


@pytest.fixture(scope="module")
def kernel_of_this_interpreter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``python3`` kernelspec that starts ``sys.executable``, first on ``JUPYTER_PATH``."""
    pytest.importorskip("ipykernel", reason="ipykernel is needed to run the notebooks")
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (sparsecnn tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        mp.delenv("JUPYTER_PREFER_ENV_PATH", raising=False)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            mp.setenv(var, "1")          # read by the kernel when it starts, not by this process
        yield "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, kernel_of_this_interpreter: str) -> None:
    if path.stem in NEEDS_TORCH:
        pytest.importorskip("torch", reason=f"{path.name} needs PyTorch: pip install -e '.[torch]'")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=kernel_of_this_interpreter,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s")
    assert elapsed < NOTEBOOK_BUDGET, f"{path.name} took {elapsed:.1f} s, more than {NOTEBOOK_BUDGET:.0f} s"
