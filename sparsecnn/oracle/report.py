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

    Examples
    --------
    >>> entry = WorstEntry("theta[3] = W^1[1, 1]", "0.weight[1, 0, 0, 0]", ours=2.0, theirs=2.5)
    >>> entry.abs_err
    0.5
    """

    ours_index: str
    torch_index: str
    ours: float
    theirs: float
    tolerance: float | None = None

    @property
    def abs_err(self) -> float:
        """``|theirs - ours|``."""
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
    entry_tol : float or None
        With per-entry tolerances (:mod:`sparsecnn.oracle.bounds`): the tolerance of the
        entry with the largest ``|theirs - ours| / tolerance``; None for the normwise rule.
    ratio : float or None
        With per-entry tolerances: ``max_k |theirs_k - ours_k| / (atol + tol_k)`` (the row
        passes when it is at most 1).

    Examples
    --------
    Made by :meth:`build` (or :meth:`unavailable`), rarely by hand:

    >>> row = Comparison.build("grad", "b^1", np.array([4.0, 0.0]), np.array([4.0, 1e-6]),
    ...                        rtol=1e-6, atol=0.0, eps=2.0 ** -23, m=1, torch_name="0.bias")
    >>> row.passed, row.scale, row.tolerance
    (True, 4.0, 4e-06)
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
    entry_tol: float | None = None
    ratio: float | None = None

    @property
    def err_over_tol(self) -> float:
        """``max |theirs - ours| / tolerance`` over the entries (per-entry rule) or the block (normwise);
        the row passes when it is at most 1."""
        if self.ratio is not None:
            return self.ratio
        tol = self.tolerance
        if tol > 0:
            return self.abs_err / tol
        return 0.0 if self.abs_err == 0 else float("inf")

    @property
    def rel_err_eps(self) -> float:
        """``rel_err`` in units of the implementation's machine epsilon."""
        return self.rel_err / self.eps

    @property
    def tolerance(self) -> float:
        """The largest ``abs_err`` that passes: ``atol + rtol * scale`` (normwise rule), or
        ``atol + tol_k`` at the entry with the largest error-to-tolerance ratio (per-entry rule)."""
        if self.entry_tol is not None:
            return self.atol + self.entry_tol
        return self.atol + self.rtol * self.scale

    @classmethod
    def build(cls, product: str, name: str, ours: np.ndarray, theirs: np.ndarray, *, rtol: float,
              atol: float, eps: float, m: int | None = None, torch_name: str = "",
              product_scale: float | None = None, k_worst: int = 5,
              locate: Callable[[int], tuple[str, str]] | None = None,
              tol: np.ndarray | None = None) -> Comparison:
        """Compare ``theirs`` with the reference ``ours`` (same shape).

        ``locate(k)`` names flat entry ``k`` of the block in both layouts;
        ``product_scale`` is the largest reference entry of the whole product
        (default: of this block).  With ``tol`` (one tolerance per entry, e.g. a
        rounding-error bound) entry ``k`` passes when ``|theirs_k - ours_k| <=
        atol + tol_k`` and ``rtol`` is not used; the worst entries are then those
        with the largest ratio of error to tolerance.

        Parameters
        ----------
        product, name : str
            See the class docstring.
        ours, theirs : ndarray
            The reference block and the block under test, same number of entries
            (for example ``vec(W^m)``, shape ``(d^{m+1} h^m h^m d^m,)``).
        rtol, atol, eps : float
            Tolerances; machine epsilon of the implementation under test.
        m : int, optional
        torch_name : str
        product_scale : float, optional
        k_worst : int
            How many worst entries to record.
        locate : callable, optional
        tol : ndarray, optional
            Per-entry tolerances, as many as entries.

        Returns
        -------
        Comparison

        Examples
        --------
        Per-entry tolerances catch an error that the block's largest entry would hide:

        >>> row = Comparison.build("grad", "W^1", np.array([100.0, 1.0]), np.array([100.0, 1.001]), rtol=1e-4,
        ...                        atol=0.0, eps=2.0 ** -23, tol=np.array([1e-3, 1e-5]))
        >>> row.passed, round(row.ratio), row.tolerance
        (False, 100, 1e-05)

        A block that is zero in the reference is measured against ``SCALE_FLOOR``
        times the product's largest entry:

        >>> row = Comparison.build("grad", "b^2", np.zeros(3), np.full(3, 1e-9), rtol=1e-6, atol=0.0,
        ...                        eps=2.0 ** -23, m=2, product_scale=10.0)
        >>> row.scale, row.passed
        (0.01, True)
        >>> row.worst[0]
        WorstEntry(ours_index='[0]', torch_index='[0]', ours=0.0, theirs=1e-09, tolerance=None)
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
        entry_tol: float | None = None
        ratio: float | None = None
        if tol is not None:
            t = np.asarray(tol, dtype=np.float64).reshape(-1)
            if t.shape != ours.shape:
                raise ValueError(f"{product} {name}: {t.size} tolerances for {size} entries")
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(diff == 0, 0.0, diff / (atol + t))
            r[np.isnan(r)] = np.inf
            key = r
            k_max = int(np.argmax(r)) if size else 0
            ratio = float(r[k_max]) if size else 0.0
            entry_tol = float(t[k_max]) if size else 0.0
            passed = bool(ratio <= 1.0)
        else:
            key = diff
            passed = bool(abs_err <= atol + rtol * scale)
        worst: list[WorstEntry] = []
        if size and k_worst > 0:
            if size > 4 * k_worst:            # the k largest without sorting the whole block
                top = np.argpartition(-key, k_worst - 1)[:k_worst]
                order = top[np.argsort(-key[top], kind="stable")]
            else:
                order = np.argsort(-key, kind="stable")[:k_worst]
            for k in order:
                if diff[k] == 0 and worst:
                    break
                where = locate(int(k)) if locate is not None else (f"[{k}]", f"[{k}]")
                worst.append(WorstEntry(where[0], where[1], float(ours[k]), float(theirs[k]),
                                        None if tol is None else float(atol + t[k])))
        note = "" if finite.all() else f"{int((~finite).sum())} entries are NaN or Inf"
        return cls(product, name, m, torch_name, size, abs_err, rel_err, scale, rtol, atol, eps,
                   passed, worst, note, entry_tol, ratio)

    @classmethod
    def unavailable(cls, product: str, name: str, note: str, *, rtol: float, atol: float, eps: float
                    ) -> Comparison:
        """A row that could not be computed (it fails, saying why).

        Parameters
        ----------
        product, name, note : str
        rtol, atol, eps : float

        Returns
        -------
        Comparison
            ``passed`` False, infinite errors, no entries.

        Examples
        --------
        >>> row = Comparison.unavailable("Gv", "J v", "the model has no second derivative",
        ...                              rtol=1e-6, atol=0.0, eps=2.0 ** -23)
        >>> row.passed, row.abs_err, row.note
        (False, inf, 'the model has no second derivative')
        """
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

    Examples
    --------
    >>> ties = TieInfo(m=1, windows=72, differ=3, exact=2, max_gap=1e-8)
    >>> ties.near
    1
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
    """``"eps32"``, ``"eps64"`` or the value.

    Examples
    --------
    >>> eps_name(2.0 ** -23), eps_name(2.0 ** -52), eps_name(1e-3)
    ('eps32', 'eps64', 'eps=0.001')
    """
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

    Examples
    --------
    Usually returned by :func:`~sparsecnn.oracle.check`; here two gradient rows, the
    second off by 0.5:

    >>> rows = [Comparison.build("grad", name, np.array([1.0, 2.0]), np.array([1.0, theirs]), rtol=1e-6,
    ...                          atol=0.0, eps=2.0 ** -23, m=m)
    ...         for name, m, theirs in [("W^2", 2, 2.0), ("W^1", 1, 2.5)]]
    >>> report = CheckReport(rows)
    >>> report.passed, report.first_failing_layer()
    (False, 1)
    >>> print(report.verdict())
    FAILED: 1 of 2 rows; first failure in backward order: grad W^1 (layer 1), max rel err 2.50e-01 (2.10e+06 eps32), abs err 5.00e-01 > tolerance 2.00e-06
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
        """The failing rows, in report order (backward order within each product).

        Returns
        -------
        list of Comparison

        Examples
        --------
        >>> rows = [Comparison.build("grad", name, np.array([1.0, 2.0]), np.array([1.0, theirs]), rtol=1e-6,
        ...                          atol=0.0, eps=2.0 ** -23, m=m)
        ...         for name, m, theirs in [("W^2", 2, 2.0), ("W^1", 1, 2.5)]]
        >>> report = CheckReport(rows)
        >>> [row.name for row in report.failures()]
        ['W^1']
        """
        return [r for r in self.rows if not r.passed]

    def first_failure(self, product: str | None = None) -> Comparison | None:
        """The first failing row (of ``product``, if given), or None.

        Parameters
        ----------
        product : str, optional
            ``"output"``, ``"f"``, ``"grad"``, ``"Jv"``, ``"JTv"`` or ``"Gv"``.

        Returns
        -------
        Comparison or None

        Examples
        --------
        >>> rows = [Comparison.build("grad", name, np.array([1.0, 2.0]), np.array([1.0, theirs]), rtol=1e-6,
        ...                          atol=0.0, eps=2.0 ** -23, m=m)
        ...         for name, m, theirs in [("W^2", 2, 2.0), ("W^1", 1, 2.5)]]
        >>> report = CheckReport(rows)
        >>> report.first_failure().name, report.first_failure("Gv")
        ('W^1', None)
        """
        for r in self.rows:
            if not r.passed and (product is None or r.product == product):
                return r
        return None

    def first_failing_layer(self, product: str | None = None) -> int | None:
        """The layer where the error starts, for ``product`` (None if its rows pass).

        How each product localises:

        - ``"forward"``: the rows ``Z^{m+1}`` compare each layer's output with the
          model's intermediate tensor, in forward order; the first failing one is
          the layer whose forward computation is wrong.
        - ``"grad"``, ``"JTv"``: the blocks ``W^m``, ``b^m`` run from layer ``L``
          down to 1 (the order of the backward pass); a wrong backward step in
          layer ``m`` leaves the blocks of layers ``m+1..L`` right, so the first
          failing block is in layer ``m`` (a wrong derivative with respect to a
          layer's *input* shows one layer lower, at the parameters it reaches).
        - ``"Jv"``: the rows ``J v^[m]`` (``v`` zero outside ``W^m``, ``b^m``),
          from ``m = L`` down to 1; the tangent of layer ``m``'s parameters passes
          through layers ``m..L`` only, so a wrong forward derivative in layer
          ``m`` fails ``J v^[m]`` and below, and the first failing row is layer ``m``.
        - ``"Gv"``: ``G v = J^T (1/l) B J v`` (``B = 2I``, or ``diag(p) - p p^T`` for cross-entropy).  If the model's ``J v`` is wrong (its
          ``J v^[m]`` rows), the error starts there and that layer is returned;
          otherwise the rows ``Gv:JT`` -- the model's ``J^T`` applied to the
          reference's ``(1/l) B J v`` -- localise its backward half as for ``"grad"``.
        - ``None`` (default): the forward layer if a forward row fails, else ``"grad"``'s
          layer, else the first failing layer of any product.

        Whatever ``product``, a failing forward row comes first: every product is
        computed from the forward pass, so that is where the error starts.

        Parameters
        ----------
        product : str, optional

        Returns
        -------
        int or None

        Examples
        --------
        >>> rows = [Comparison.build("grad", name, np.array([1.0, 2.0]), np.array([1.0, theirs]), rtol=1e-6,
        ...                          atol=0.0, eps=2.0 ** -23, m=m)
        ...         for name, m, theirs in [("W^2", 2, 2.0), ("W^1", 1, 2.5)]]
        >>> report = CheckReport(rows)
        >>> report.first_failing_layer(), report.first_failing_layer("Jv")
        (1, None)
        """
        def first(prod: str) -> int | None:
            for r in self.rows:
                if r.product == prod and r.m is not None and not r.passed:
                    return r.m
            return None

        fwd = first("forward")
        if fwd is not None:
            return fwd
        if product is None:
            got = first("grad")
            if got is not None:
                return got
            for r in self.rows:
                if r.m is not None and not r.passed:
                    return r.m
            return None
        if product == "Gv":
            if not any(r.product in ("Gv", "Gv:JT") and not r.passed for r in self.rows):
                return None
            return first("Jv") or first("Gv:JT") or first("Gv")
        return first(product)

    def row(self, product: str, name: str) -> Comparison:
        """The row of ``product`` named ``name`` (e.g. ``report.row("grad", "W^2")``).

        Parameters
        ----------
        product, name : str

        Returns
        -------
        Comparison

        Raises
        ------
        KeyError
            If there is no such row (the message lists the rows).

        Examples
        --------
        >>> rows = [Comparison.build("grad", name, np.array([1.0, 2.0]), np.array([1.0, theirs]), rtol=1e-6,
        ...                          atol=0.0, eps=2.0 ** -23, m=m)
        ...         for name, m, theirs in [("W^2", 2, 2.0), ("W^1", 1, 2.5)]]
        >>> report = CheckReport(rows)
        >>> report.row("grad", "W^2").passed
        True
        """
        for r in self.rows:
            if r.product == product and r.name == name:
                return r
        raise KeyError(f"no row {product} {name}; rows: {[(r.product, r.name) for r in self.rows]}")

    def raise_if_failed(self) -> CheckReport:
        """Raise :class:`OracleMismatch` (its message the report) unless every row passed.

        Returns
        -------
        CheckReport
            ``self``, when every row passed.

        Examples
        --------
        >>> rows = [Comparison.build("grad", name, np.array([1.0, 2.0]), np.array([1.0, theirs]), rtol=1e-6,
        ...                          atol=0.0, eps=2.0 ** -23, m=m)
        ...         for name, m, theirs in [("W^2", 2, 2.0), ("W^1", 1, 2.5)]]
        >>> report = CheckReport(rows)
        >>> CheckReport(rows[:1]).raise_if_failed().passed
        True
        >>> try:
        ...     report.raise_if_failed()
        ... except OracleMismatch as err:
        ...     print(err.report is report, str(err).splitlines()[-1][:19])
        True FAILED: 1 of 2 rows
        """
        if not self.passed:
            raise OracleMismatch(self)
        return self

    # text -------------------------------------------------------------------
    def table(self) -> str:
        """The rows as an aligned text table.

        Returns
        -------
        str

        Examples
        --------
        >>> rows = [Comparison.build("grad", name, np.array([1.0, 2.0]), np.array([1.0, theirs]), rtol=1e-6,
        ...                          atol=0.0, eps=2.0 ** -23, m=m)
        ...         for name, m, theirs in [("W^2", 2, 2.0), ("W^1", 1, 2.5)]]
        >>> report = CheckReport(rows)
        >>> print(report.table())
        product  block  layer  torch  entries  max abs err  max rel err  rel [eps32]  tolerance  err/tol  status
        grad     W^2    2      -            2            0            0            0   2.00e-06        0  ok
        grad     W^1    1      -            2     5.00e-01     2.50e-01     2.10e+06   2.00e-06  2.50e+05  FAIL
        """
        eps = {eps_name(r.eps) for r in self.rows}
        unit = eps.pop() if len(eps) == 1 else "eps"
        head = ("product", "block", "layer", "torch", "entries", "max abs err", "max rel err",
                f"rel [{unit}]", "tolerance", "err/tol", "status")
        lines: list[tuple[str, ...]] = [head]
        for r in self.rows:
            status = "ok" if r.passed else "FAIL"
            lines.append((r.product, r.name, "-" if r.m is None else str(r.m), r.torch_name or "-",
                          str(r.size), _fmt(r.abs_err), _fmt(r.rel_err), _fmt_eps(r.rel_err_eps),
                          _fmt(r.tolerance), _fmt_eps(r.err_over_tol), status))
        widths = [max(len(line[k]) for line in lines) for k in range(len(head))]
        right = {4, 5, 6, 7, 8, 9}
        out = []
        for line in lines:
            cells = [c.rjust(w) if k in right else c.ljust(w)
                     for k, (c, w) in enumerate(zip(line, widths, strict=True))]
            out.append("  ".join(cells).rstrip())
        return "\n".join(out)

    def worst_entries(self, rows: Sequence[Comparison] | None = None) -> str:
        """The worst entries of ``rows`` (default: the failing rows), both layouts and both values.

        Parameters
        ----------
        rows : sequence of Comparison, optional

        Returns
        -------
        str

        Examples
        --------
        >>> rows = [Comparison.build("grad", name, np.array([1.0, 2.0]), np.array([1.0, theirs]), rtol=1e-6,
        ...                          atol=0.0, eps=2.0 ** -23, m=m)
        ...         for name, m, theirs in [("W^2", 2, 2.0), ("W^1", 1, 2.5)]]
        >>> report = CheckReport(rows)
        >>> print(report.worst_entries())
        worst entries of grad W^1:
          sparsecnn  torch  ours  theirs   abs err
          [1]        [1]       2     2.5  5.00e-01
        """
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
        """One line per max-pooling layer about ties (empty when there is none).

        Returns
        -------
        str
            A header naming where ``P_pool``'s winners came from, then one line per layer.

        Examples
        --------
        >>> report = CheckReport([], ties=[TieInfo(1, 72, 0, 0, 0.0), TieInfo(2, 8, 1, 1, 0.0)],
        ...                      use_model_winners=True)
        >>> print(report.ties_summary())
        max pooling: P_pool built from the model's winners (PyTorch max_pool2d, return_indices=True)
          layer 1: no ties (72 windows; both argmax rules agree)
          layer 2: ties present: 1 of 8 windows won by different entries (1 exact ties)
        """
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
        """``"PASSED"`` or ``"FAILED: ..."`` naming the first failing row.

        Returns
        -------
        str

        Examples
        --------
        >>> rows = [Comparison.build("grad", name, np.array([1.0, 2.0]), np.array([1.0, theirs]), rtol=1e-6,
        ...                          atol=0.0, eps=2.0 ** -23, m=m)
        ...         for name, m, theirs in [("W^2", 2, 2.0), ("W^1", 1, 2.5)]]
        >>> report = CheckReport(rows)
        >>> CheckReport(rows[:1]).verdict()
        'PASSED: 1 rows within tolerance'
        >>> report.verdict()[:56]
        'FAILED: 1 of 2 rows; first failure in backward order: gr'
        """
        if self.passed:
            return f"PASSED: {len(self.rows)} rows within tolerance"
        first = self.first_failure()
        assert first is not None
        where = f"{first.product} {first.name}"
        if first.m is not None:
            where += f" (layer {first.m}" + (f", torch {first.torch_name})" if first.torch_name else ")")
        order = "forward" if first.product == "forward" else "backward"
        return (f"FAILED: {len(self.failures())} of {len(self.rows)} rows; first failure in {order} order: "
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
