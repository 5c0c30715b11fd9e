"""A griffe extension for the API pages: read the docstrings' reStructuredText bits as Markdown.

The library's docstrings are numpy-style and use a few Sphinx conventions that
Markdown does not know: roles such as :func:`vec` or :class:`~sparsecnn.Network`,
a paragraph ending in ``::`` before an indented literal block, and formulas
written as :math:`...` roles or ``.. math::`` directives.  This extension
rewrites them, at load time, into inline code, a plain colon and the TeX
delimiters that pymdownx.arithmatex hands to MathJax (``\\( \\)`` inline,
``$$ $$`` displayed), so that the pages read cleanly and show the formulas
typeset, without changing the docstrings (which also serve ``help()`` and the
doctests).  Registered in mkdocs.yml under the python handler's ``extensions``.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|data|attr|exc|obj|const|ref|term):`(~?)([^`]+)`")
_LITERAL_BLOCK = re.compile(r"(\S)::[ \t]*\n(?=[ \t]*\n)")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^([ \t]*)\.\. math::[ \t]*\n((?:[ \t]*\n)*)((?:\1[ \t]+\S[^\n]*\n?|[ \t]*\n)+)",
                             flags=re.M)


def _math_block(match: re.Match[str]) -> str:
    indent, body = match.group(1), match.group(3)
    lines = [line.strip() for line in body.rstrip().split("\n")]
    return f"{indent}$$\n" + "".join(f"{indent}{line}\n" for line in lines) + f"{indent}$$\n\n"


def math_to_tex(text: str) -> str:
    r"""Sphinx's math role and directive to the delimiters of pymdownx.arithmatex.

    >>> math_to_tex(r"the product :math:`P_{\mathrm{pool}} \mathrm{vec}(S)` of (5)")
    'the product \\(P_{\\mathrm{pool}} \\mathrm{vec}(S)\\) of (5)'
    >>> print(math_to_tex("Entry by entry:\n\n.. math::\n\n    \\mathrm{vec}(Z)_{c + dj} = Z_{cj}\n\nso."))
    Entry by entry:
    <BLANKLINE>
    $$
    \mathrm{vec}(Z)_{c + dj} = Z_{cj}
    $$
    <BLANKLINE>
    so.
    """
    text = _MATH_DIRECTIVE.sub(_math_block, text)
    return _MATH_ROLE.sub(lambda m: "\\(" + m.group(1) + "\\)", text)


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    if tilde:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


_TYPED_SECTIONS = {"Parameters", "Other Parameters", "Returns", "Yields", "Receives", "Raises",
                   "Warns", "Attributes"}


_NAMED_SECTIONS = {"Parameters", "Other Parameters", "Attributes"}
_NBSP = "\u00a0"


def _plain_type_line(line: str, names_first: bool) -> str:
    """Spaces of the type part to no-break spaces, so that it is shown as written.

    Otherwise the type is parsed as a Python expression and ``ndarray, shape (n,)``
    comes out as ``ndarray, shape(n)``.
    """
    name, sep, typ = line.rpartition(" : ")
    if not sep:
        if names_first:            # "a, b" in Parameters: names without a type
            return line
        name, typ = "", line
    lead = len(typ) - len(typ.lstrip())
    return name + sep + typ[:lead] + typ[lead:].rstrip().replace(" ", _NBSP)


def _plain_types(text: str) -> str:
    """Type lines of numpy sections without backticks (they are shown as code anyway), written as is."""
    lines = text.split("\n")
    section, indent = None, 0
    for k, line in enumerate(lines):
        nxt = lines[k + 1] if k + 1 < len(lines) else ""
        stripped = line.strip()
        if stripped and set(nxt.strip()) == {"-"} and len(nxt.strip()) >= 3:
            section = stripped if stripped in _TYPED_SECTIONS else None
            indent = len(line) - len(line.lstrip())
            continue
        if section and stripped and not set(stripped) <= {"-"}:
            if len(line) - len(line.lstrip()) == indent:
                lines[k] = _plain_type_line(line.replace("`", ""), section in _NAMED_SECTIONS)
    return "\n".join(lines)


def markdownify(text: str) -> str:
    """Sphinx roles to inline code, ``text::`` before a literal block to ``text:``, and
    no backticks in the type lines of numpy sections.

    >>> markdownify("see :func:`vec` and :class:`~sparsecnn.exceptions.ShapeError`")
    'see `vec` and `ShapeError`'
    >>> markdownify("Layer m::\\n\\n    S = W phi + b")
    'Layer m:\\n\\n    S = W phi + b'
    >>> markdownify("Returns\\n-------\\nndarray, shape ``(n,)``\\n    The ``theta``.")
    'Returns\\n-------\\nndarray,\\xa0shape\\xa0(n,)\\n    The ``theta``.'
    """
    text = math_to_tex(text)
    text = _ROLE.sub(_role, text)
    text = _LITERAL_BLOCK.sub(r"\1:\n", text)
    return _plain_types(text)


class SphinxRoles(Extension):
    """Rewrite every docstring with :func:`markdownify` as it is loaded."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdownify(obj.docstring.value)
