"""Every public function, class and method of sparsecnn is documented with a runnable example (issue #7).

The rule these tests enforce
----------------------------
*Public modules* are ``sparsecnn`` and every module ``pkgutil.walk_packages``
finds under it, except those with a dotted-name part starting with ``_``
(``sparsecnn._argtypes``, ``sparsecnn.optim._common``, ...).

*Public names* of a module are its ``__all__`` where it defines one, otherwise
the names without a leading ``_`` whose object was defined in that module.
Of those, the functions and classes defined inside sparsecnn are checked
(re-exports are checked once, where they are defined; constants are not
checked).  Of every such class, the public members it defines itself (not
inherited; no ``_`` prefix, so no dunders) that are functions, static or class
methods, or properties are checked as well.

* A function, a class (dataclasses and named tuples included) and a method
  needs a docstring with a numpydoc ``Examples`` section (a line ``Examples``
  underlined with dashes) holding at least one ``>>>`` example that is not
  marked ``# doctest: +SKIP`` - so ``pytest --doctest-modules`` really runs it.
* A property and an exception class (a subclass of ``BaseException``) need
  only a docstring: they are read, not called, and an exception's example is
  the ``raise`` in the function that documents it.  Dataclass fields cannot
  carry docstrings at run time; they are described in their class's
  docstring, which needs an example as any class does.
* A docstring that ``dataclasses`` or ``typing.NamedTuple`` wrote (the bare
  signature ``Name(field, ...)``) counts as missing.
* A method without a docstring of its own that overrides a documented method
  of a sparsecnn base class inherits that docstring (as ``inspect.getdoc``
  does, but only from sparsecnn's classes, not from scipy's or the standard
  library's).

Whether an example passes is ``pytest --doctest-modules``' business (see
``[tool.pytest.ini_options]`` in pyproject.toml); these tests check that one
exists.  All offenders are reported in one failure message.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import sparsecnn

PACKAGE_DIR = Path(sparsecnn.__file__).resolve().parent

_EXAMPLES_HEADER = re.compile(r"^[ \t]*Examples[ \t]*\n[ \t]*-{3,}[ \t]*$", re.MULTILINE)
_NEXT_SECTION = re.compile(r"^[ \t]*\w[\w ]*[ \t]*\n[ \t]*-{3,}[ \t]*$", re.MULTILINE)


# ----------------------------------------------------------------------------- walking the package
def public_modules() -> list[ModuleType]:
    """``sparsecnn`` and its submodules, without the private ones (a part starting with ``_``)."""
    modules = [sparsecnn]
    for info in pkgutil.walk_packages(sparsecnn.__path__, prefix="sparsecnn."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        modules.append(importlib.import_module(info.name))
    return modules


def _defined_in_sparsecnn(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "sparsecnn" or module.startswith("sparsecnn.")


def public_names(module: ModuleType) -> list[str]:
    """``__all__`` where the module defines it, else its own names without a leading ``_``."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__]


def public_objects() -> dict[str, tuple[str, Any, type | None]]:
    """``{qualified name: (kind, object, owning class or None)}`` of every checked object."""
    found: dict[str, tuple[str, Any, type | None]] = {}
    for module in public_modules():
        for name in public_names(module):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or not _defined_in_sparsecnn(obj):
                continue
            key = f"{obj.__module__}.{obj.__qualname__}"
            if key in found:
                continue
            if inspect.isfunction(obj):
                found[key] = ("function", obj, None)
                continue
            found[key] = ("exception" if issubclass(obj, BaseException) else "class", obj, None)
            for member_name, (kind, member) in _own_members(obj):
                found[f"{key}.{member_name}"] = (kind, member, obj)
    return found


def _own_members(cls: type) -> Iterator[tuple[str, tuple[str, Any]]]:
    for name, raw in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(raw, property):
            yield name, ("property", raw)
        elif isinstance(raw, (staticmethod, classmethod)):
            yield name, ("method", raw.__func__)
        elif inspect.isfunction(raw):
            yield name, ("method", raw)
        elif type(raw).__name__ == "cached_property":
            yield name, ("property", raw)


# ----------------------------------------------------------------------------- judging one docstring
def _inherited_doc(owner: type, name: str) -> str | None:
    """The docstring of ``name`` in the nearest sparsecnn base class of ``owner`` that documents it."""
    for base in owner.__mro__[1:]:
        if not _defined_in_sparsecnn(base) or name not in vars(base):
            continue
        raw = vars(base)[name]
        doc = getattr(getattr(raw, "__func__", raw), "__doc__", None)
        if doc and doc.strip():
            return str(doc)
    return None


def _docstring(kind: str, obj: Any, owner: type | None = None) -> str | None:
    doc = obj.__doc__
    if (not doc or not doc.strip()) and kind == "method" and owner is not None:
        doc = _inherited_doc(owner, obj.__name__)
    if not doc or not doc.strip():
        return None
    if inspect.isclass(obj) and _is_generated(obj, doc):
        return None
    return inspect.cleandoc(doc)


def _is_generated(cls: type, doc: str) -> bool:
    """True for the signature-only docstring dataclasses and NamedTuple write when none is given."""
    stripped = doc.strip()
    if dataclasses.is_dataclass(cls):
        try:
            signature = str(inspect.signature(cls)).replace(" -> None", "")
        except (TypeError, ValueError):
            signature = ""
        if stripped == cls.__name__ + signature:
            return True
    fields = getattr(cls, "_fields", None)
    return isinstance(fields, tuple) and stripped == f"{cls.__name__}({', '.join(fields)})"


def _examples_section(doc: str) -> str | None:
    header = _EXAMPLES_HEADER.search(doc)
    if header is None:
        return None
    rest = doc[header.end():]
    following = _NEXT_SECTION.search(rest)
    return rest[: following.start()] if following else rest


def _runs_an_example(section: str) -> bool:
    examples = doctest.DocTestParser().get_examples(section)
    return any(not ex.options.get(doctest.SKIP, False) for ex in examples)


def problem(kind: str, obj: Any, owner: type | None = None) -> str | None:
    """What is wrong with one object's docstring under the rule of this module, or None."""
    doc = _docstring(kind, obj, owner)
    if doc is None:
        return "no docstring"
    if kind in ("property", "exception"):
        return None
    section = _examples_section(doc)
    if section is None:
        return "no 'Examples' section"
    if ">>>" not in section:
        return "'Examples' section without a '>>>' line"
    if not _runs_an_example(section):
        return "every example is marked '# doctest: +SKIP'"
    return None


def _source_file(obj: Any) -> str:
    """The defining file, relative to the package (``optim/newton.py``), of a checked object."""
    target = obj.fget if isinstance(obj, property) else getattr(obj, "func", obj)
    module = importlib.import_module(target.__module__)
    return Path(str(module.__file__)).resolve().relative_to(PACKAGE_DIR).as_posix()


def offenders() -> list[str]:
    """Every offender, one line ``file: name (kind): problem`` each."""
    found: list[str] = []
    for key, (kind, obj, owner) in sorted(public_objects().items()):
        what = problem(kind, obj, owner)
        if what is None:
            continue
        found.append(f"{_source_file(obj)}: {key} ({kind}): {what}")
    return found


# ----------------------------------------------------------------------------- the tests
def test_the_walk_finds_the_public_api():
    names = public_objects()
    for expected in ("sparsecnn.network.Network", "sparsecnn.notation.vec",
                     "sparsecnn.operators.pad.P_pad", "sparsecnn.config.parse_simplenn_config"):
        assert expected in names, f"{expected} not found by the walk: {sorted(names)[:20]} ..."
    assert not any("._argtypes." in key for key in names), "private modules are not walked"
    kinds = {kind for kind, _, _ in names.values()}
    assert {"function", "class", "method", "property", "exception"} <= kinds, kinds


def test_the_rule_flags_missing_docstrings_and_examples():
    def bare(x):
        return x

    def prose_only(x):
        """Return x.

        Parameters
        ----------
        x : int
        """
        return x

    def prose_example(x):
        """Return x.

        Examples
        --------
        Call it with any x.
        """
        return x

    def skipped_only(x):
        """Return x.

        Examples
        --------
        >>> bare(1)  # doctest: +SKIP
        1
        """
        return x

    def good(x):
        """Return x.

        Examples
        --------
        >>> good(1)
        1

        Notes
        -----
        Nothing to add.
        """
        return x

    @dataclasses.dataclass
    class Generated:
        x: int

    class Report(sparsecnn.oracle.CheckReport):          # overrides a documented sparsecnn method
        def verdict(self):
            return "PASSED"

    class Mapping(dict):                                 # overrides a method documented only by Python
        def keys(self):
            return []

    assert problem("function", bare) == "no docstring"
    assert problem("function", prose_only) == "no 'Examples' section"
    assert problem("function", prose_example) == "'Examples' section without a '>>>' line"
    assert problem("function", skipped_only) == "every example is marked '# doctest: +SKIP'"
    assert problem("function", good) is None
    assert problem("class", Generated) == "no docstring"
    assert problem("exception", sparsecnn.ShapeError) is None
    assert problem("property", property(good)) is None
    assert problem("property", property(bare)) == "no docstring"
    assert problem("method", Report.verdict, Report) is None
    assert problem("method", Mapping.keys, Mapping) == "no docstring"


def test_every_public_module_has_a_docstring():
    missing = [module.__name__ for module in public_modules()
               if not (module.__doc__ or "").strip()]
    assert not missing, "public modules without a docstring:\n  " + "\n  ".join(missing)


def test_every_public_function_has_a_doctested_example():
    """Functions, classes and methods: docstring with a runnable ``Examples`` section; properties and
    exceptions: a docstring."""
    outside = offenders()
    assert not outside, (
        f"{len(outside)} public objects break the docstring rule of tests/test_docstrings.py:\n  "
        + "\n  ".join(outside)
    )
