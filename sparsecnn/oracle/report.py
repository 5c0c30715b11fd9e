"""The oracle's report: one row per product and parameter block, the worst entries, pass or fail.

A row compares one block of entries -- ``z^{L+1}``, ``f``, or ``W^m`` / ``b^m``
of the gradient, ``J^T u`` or ``G v``, or ``J v`` -- of the implementation under
test ("theirs") with sparsecnn's float64 reference ("ours"):

- ``abs_err = max_k |theirs_k - ours_k|`` over the block;
- ``scale = max(max_k |ours_k|, floor * max |ours|)``, the block's largest
  reference entry, floored at ``floor = 1e-3`` times the largest entry of the
  whole product (so a block that is zero or tiny in the reference tolerates the
  rounding noise of the rest instead of failing on it);
- ``rel_err = abs_err / scale`` (normwise: entrywise ratios explode where an
  entry happens to be near zero) and ``rel_err / eps`` in units of the
  implementation's machine epsilon (``eps32 = 2^-23`` for float32 models);
- the row passes when ``abs_err <= atol + rtol * scale``.

Rows are listed in the order errors propagate: the forward pass (``z^{L+1}``,
``f``), then each product's blocks from the last layer to the first (the order
of the backward pass).  A wrong backward step in layer ``m`` leaves layers
``m+1..L`` right and makes ``W^m``/``b^m`` the first failing block, so
:meth:`CheckReport.first_failure` names the layer where the bug is.

Examples
--------
>>> import numpy as np
>>> row = Comparison.build("grad", "W^2", np.array([1.0, -2.0]), np.array([1.0, -2.5]),
...                        rtol=1e-9, atol=0.0, eps=2.0 ** -52, m=2)
>>> row.passed, row.abs_err, row.rel_err
(False, 0.5, 0.25)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import SparseCNNError

__all__ = ["Comparison", "WorstEntry", "TieInfo", "CheckReport", "OracleMismatch", "SCALE_FLOOR"]

SCALE_FLOOR = 1e-3
"""A block's scale is at least this fraction of its product's largest reference entry."""


class OracleMismatch(SparseCNNError, AssertionError):  # noqa: N818 - the name the API promises
    """The implementation under test disagrees with sparsecnn; ``str(err)`` holds the report's table.

    Attributes
    ----------
    report : CheckReport
    """

    def __init__(self, report: CheckReport) -> None:
        super().__init__(str(report))
        self.report = report


@dataclass(frozen=True)
class WorstEntry:
    """One entry of a block with a large error, located in both layouts.

    Attributes
    ----------
    ours_index : str
        In sparsecnn's layout, e.g. ``"theta[130] = W^2[3, 17]"`` or ``"z^{L+1}[k, i]"``.
    torch_index : str
        In PyTorch's layout, e.g. ``"3.weight[3, 1, 2, 0]"`` or ``"out[i, k]"``.
    ours, theirs : float
        The reference value and the value under test.
    """

    ours_index: str
    torch_index: str
    ours: float
    theirs: float

    @property
    def abs_err(self) -> float:
        return abs(self.theirs - self.ours)


@dataclass
class Comparison:
    """One row of the report: a block of entries of one product.

    Attributes
    ----------
    product : str
        ``"output"``, ``"f"``, ``"grad"``, ``"Jv"``, ``"JTv"`` (``"JTu"`` in golden files) or ``"Gv"``.
    name : str
        ``"z^{L+1}"``, ``"f"``, ``"W^m"``, ``"b^m"`` or ``"J v"``.
    m : int or None
        The layer of a parameter block.
    torch_name : str
        PyTorch's name of the block (a ``state_dict`` key, ``"output"``, ...).
    size : int
        Entries compared.
    abs_err, rel_err, scale : float
        See the module docstring; ``rel_err = abs_err / scale``.
    rtol, atol, eps : float
        Tolerances and the machine epsilon of the implementation under test.
    passed : bool
    worst : list of WorstEntry
        The entries with the largest errors, largest first.
    note : str
        Anything the row needs said (for example why a product could not be computed).
    """

    product: str
    name: str
    m: int | None
    torch_name: str
    size: int
    abs_err: float
    rel_err: float
    scale: float
    rtol: float
    atol: float
    eps: float
    passed: bool
    worst: list[WorstEntry] = field(default_factory=list)
    note: str = ""

    @property
    def rel_err_eps(self) -> float:
        """``rel_err`` in units of the implementation's machine epsilon."""
        return self.rel_err / self.eps

    @property
    def tolerance(self) -> float:
        """The largest ``abs_err`` that passes: ``atol + rtol * scale``."""
        return self.atol + self.rtol * self.scale

    @classmethod
    def build(cls, product: str, name: str, ours: np.ndarray, theirs: np.ndarray, *, rtol: float,
              atol: float, eps: float, m: int | None = None, torch_name: str = "",
              product_scale: float | None = None, k_worst: int = 5,
              locate: Callable[[int], tuple[str, str]] | None = None) -> Comparison:
        """Compare ``theirs`` with the reference ``ours`` (same shape).

        ``locate(k)`` names flat entry ``k`` of the block in both layouts;
        ``product_scale`` is the largest reference entry of the whole product
        (default: of this block).
        """
        ours = np.asarray(ours, dtype=np.float64).reshape(-1)
        theirs = np.asarray(theirs, dtype=np.float64).reshape(-1)
        if ours.shape != theirs.shape:
            raise ValueError(f"{product} {name}: {theirs.size} entries under test, {ours.size} in the reference")
        size = int(ours.size)
        diff = np.abs(theirs - ours)
        finite = np.isfinite(theirs)
        diff[~finite] = np.inf
        block_scale = float(np.abs(ours).max()) if size else 0.0
        floor = SCALE_FLOOR * (block_scale if product_scale is None else float(product_scale))
        scale = max(block_scale, floor)
        abs_err = float(diff.max()) if size else 0.0
        if scale > 0:
            rel_err = abs_err / scale
        else:
            rel_err = 0.0 if abs_err == 0 else np.inf
        passed = bool(abs_err <= atol + rtol * scale)
        worst: list[WorstEntry] = []
        if size and k_worst > 0:
            order = np.argsort(-diff, kind="stable")[:k_worst]
            for k in order:
                if diff[k] == 0 and worst:
                    break
                where = locate(int(k)) if locate is not None else (f"[{k}]", f"[{k}]")
                worst.append(WorstEntry(where[0], where[1], float(ours[k]), float(theirs[k])))
        note = "" if finite.all() else f"{int((~finite).sum())} entries are NaN or Inf"
        return cls(product, name, m, torch_name, size, abs_err, rel_err, scale, rtol, atol, eps,
                   passed, worst, note)

    @classmethod
    def unavailable(cls, product: str, name: str, note: str, *, rtol: float, atol: float, eps: float
                    ) -> Comparison:
        """A row that could not be computed (it fails, saying why)."""
        return cls(product, name, None, "", 0, np.inf, np.inf, 0.0, rtol, atol, eps, False, [], note)


@dataclass(frozen=True)
class TieInfo:
    """Max-pooling windows of one layer where the two argmax rules pick different entries.

    Attributes
    ----------
    m : int
        The conv layer.
    windows : int
        Windows (over all instances) in the batch.
    differ : int
        Windows where the model's winner differs from sparsecnn's own argmax.
    exact : int
        Of those, windows where the two winners hold equal values in the
        reference ``sigma(S^m)``: genuine ties (PyTorch takes the first maximum
        in row-major order, sparsecnn in column-major order).
    max_gap : float
        Largest ``(max of window - value at the model's winner) / max |sigma(S^m)|``
        over the differing windows; nonzero where the model, computing in lower
        precision, saw a different maximum than the float64 reference (near-ties).
    """

    m: int
    windows: int
    differ: int
    exact: int
    max_gap: float

    @property
    def near(self) -> int:
        """Differing windows whose values are not exactly equal in the reference."""
        return self.differ - self.exact


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if not np.isfinite(x):
        return str(x)
    return f"{x:.2e}"


def _fmt_eps(x: float) -> str:
    if not np.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.3g}" if x < 1e6 else f"{x:.2e}"


def eps_name(eps: float) -> str:
    """``"eps32"``, ``"eps64"`` or the value."""
    if eps == float(np.finfo(np.float32).eps):
        return "eps32"
    if eps == float(np.finfo(np.float64).eps):
        return "eps64"
    if eps == float(np.finfo(np.float16).eps):
        return "eps16"
    return f"eps={eps:.3g}"


@dataclass
class CheckReport:
    """Everything a check found: the rows, the setting, and the verdict.

    Attributes
    ----------
    rows : list of Comparison
        In the order of the module docstring (forward pass, then each product backward).
    title : str
        What was compared with what.
    setting : list of str
        Lines describing the data, tolerances, random vectors and pooling winners.
    ties : list of TieInfo
        One entry per max-pooling layer (empty when there is none or it was not examined).
    use_model_winners : bool or None
        Whether ``P_pool`` was built from the model's winners (None: not applicable).
    inputs : dict of str to ndarray
        What the check used, to reproduce it: ``"X"`` (sparsecnn's layout), ``"y"``,
        ``"theta"``, ``"v"`` (``theta``'s order), ``"u"`` (``(n_L, l)``) and the
        winners ``"winners/<m>"`` that built ``P_pool``.
    """

    rows: list[Comparison]
    title: str = "sparsecnn check"
    setting: list[str] = field(default_factory=list)
    ties: list[TieInfo] = field(default_factory=list)
    use_model_winners: bool | None = None
    inputs: dict[str, np.ndarray] = field(default_factory=dict)

    # verdict ----------------------------------------------------------------
    @property
    def passed(self) -> bool:
        """Every row passed."""
        return all(r.passed for r in self.rows)

    @property
    def ties_present(self) -> bool:
        """Some max-pooling window was won by a different entry under the two argmax rules."""
        return any(t.differ for t in self.ties)

    def failures(self) -> list[Comparison]:
        """The failing rows, in report order (backward order within each product)."""
        return [r for r in self.rows if not r.passed]

    def first_failure(self, product: str | None = None) -> Comparison | None:
        """The first failing row (of ``product``, if given), or None."""
        for r in self.rows:
            if not r.passed and (product is None or r.product == product):
                return r
        return None

    def first_failing_layer(self, product: str = "grad") -> int | None:
        """The layer of the first failing parameter block of ``product`` (None if all its blocks pass)."""
        for r in self.rows:
            if r.product == product and r.m is not None and not r.passed:
                return r.m
        return None

    def row(self, product: str, name: str) -> Comparison:
        """The row of ``product`` named ``name`` (e.g. ``report.row("grad", "W^2")``)."""
        for r in self.rows:
            if r.product == product and r.name == name:
                return r
        raise KeyError(f"no row {product} {name}; rows: {[(r.product, r.name) for r in self.rows]}")

    def raise_if_failed(self) -> CheckReport:
        """Raise :class:`OracleMismatch` (its message the report) unless every row passed."""
        if not self.passed:
            raise OracleMismatch(self)
        return self

    # text -------------------------------------------------------------------
    def table(self) -> str:
        """The rows as an aligned text table."""
        eps = {eps_name(r.eps) for r in self.rows}
        unit = eps.pop() if len(eps) == 1 else "eps"
        head = ("product", "block", "layer", "torch", "entries", "max abs err", "max rel err",
                f"rel [{unit}]", "tolerance", "status")
        lines: list[tuple[str, ...]] = [head]
        for r in self.rows:
            status = "ok" if r.passed else "FAIL"
            lines.append((r.product, r.name, "-" if r.m is None else str(r.m), r.torch_name or "-",
                          str(r.size), _fmt(r.abs_err), _fmt(r.rel_err), _fmt_eps(r.rel_err_eps),
                          _fmt(r.tolerance), status))
        widths = [max(len(line[k]) for line in lines) for k in range(len(head))]
        right = {4, 5, 6, 7, 8}
        out = []
        for line in lines:
            cells = [c.rjust(w) if k in right else c.ljust(w)
                     for k, (c, w) in enumerate(zip(line, widths, strict=True))]
            out.append("  ".join(cells).rstrip())
        return "\n".join(out)

    def worst_entries(self, rows: Sequence[Comparison] | None = None) -> str:
        """The worst entries of ``rows`` (default: the failing rows), both layouts and both values."""
        rows = self.failures() if rows is None else rows
        out: list[str] = []
        for r in rows:
            label = f"{r.product} {r.name}" + (f" ({r.torch_name})" if r.torch_name else "")
            if r.note:
                out.append(f"{label}: {r.note}")
            if not r.worst:
                continue
            out.append(f"worst entries of {label}:")
            cells = [("sparsecnn", "torch", "ours", "theirs", "abs err")]
            cells += [(w.ours_index, w.torch_index, f"{w.ours:.10g}", f"{w.theirs:.10g}", _fmt(w.abs_err))
                      for w in r.worst]
            widths = [max(len(c[k]) for c in cells) for k in range(5)]
            for c in cells:
                out.append("  " + "  ".join(x.ljust(w) if k < 2 else x.rjust(w)
                                            for k, (x, w) in enumerate(zip(c, widths, strict=True))).rstrip())
        return "\n".join(out)

    def ties_summary(self) -> str:
        """One line per max-pooling layer about ties (empty when there is none)."""
        if not self.ties:
            return ""
        lines = []
        source = {True: "the model's winners (PyTorch max_pool2d, return_indices=True)",
                  False: "sparsecnn's own argmax (first maximum in column-major order)",
                  None: "the file's winners"}[self.use_model_winners]
        lines.append(f"max pooling: P_pool built from {source}")
        for t in self.ties:
            if t.differ == 0:
                lines.append(f"  layer {t.m}: no ties ({t.windows} windows; both argmax rules agree)")
                continue
            text = (f"  layer {t.m}: ties present: {t.differ} of {t.windows} windows won by different "
                    f"entries ({t.exact} exact ties")
            if t.near:
                text += f", {t.near} near-ties, largest gap {t.max_gap:.2e} of max|sigma(S)|"
            text += ")"
            if self.use_model_winners is False:
                text += "; the gradient may differ there: rerun with use_model_winners=True"
            lines.append(text)
        return "\n".join(lines)

    def verdict(self) -> str:
        """``"PASSED"`` or ``"FAILED: ..."`` naming the first failing row."""
        if self.passed:
            return f"PASSED: {len(self.rows)} rows within tolerance"
        first = self.first_failure()
        assert first is not None
        where = f"{first.product} {first.name}"
        if first.m is not None:
            where += f" (layer {first.m}" + (f", torch {first.torch_name})" if first.torch_name else ")")
        return (f"FAILED: {len(self.failures())} of {len(self.rows)} rows; first failure in backward order: "
                f"{where}, max rel err {_fmt(first.rel_err)} ({_fmt_eps(first.rel_err_eps)} "
                f"{eps_name(first.eps)}), abs err {_fmt(first.abs_err)} > tolerance {_fmt(first.tolerance)}")

    def __str__(self) -> str:
        parts = [self.title, *self.setting]
        ties = self.ties_summary()
        if ties:
            parts.append(ties)
        parts += ["", self.table()]
        worst = self.worst_entries()
        if worst:
            parts += ["", worst]
        parts += ["", self.verdict()]
        return "\n".join(parts)
