"""MkDocs hooks of the sparsecnn site (registered under ``hooks:`` in mkdocs.yml).

- The notebooks of ``notebooks/`` become pages under ``notebooks/`` without being
  copied into ``docs/``: they are added to the site's files before mkdocs-jupyter
  converts (and, with ``execute: true``, runs) them, from their own folder, so a
  notebook runs with ``notebooks/`` as its working directory, as a student opens it.
- MathJax 3 is served from the built site: its ``es5`` folder, shipped by the PyPI
  package ``django-static-mathjax`` (the ``docs`` extra; the package needs no Django
  to be read), is copied to ``assets/mathjax/``.  No page loads anything from
  another host.
- Notebook pages hide the right-hand table of contents, so that code and pictures
  get the width of the page (1280 px reads without horizontal scrolling); the table,
  still in the navigation on a narrow screen, gets the ids the headings really have.
- nbconvert's page template links MathJax 2 and mermaid from a CDN; those tags are
  removed from the notebook pages, whose math the site's MathJax typesets.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
MATHJAX_DEST = Path("assets") / "mathjax"

# nbconvert's <script src="..."> of MathJax 2 (an empty src when no URL is configured), its
# text/x-mathjax-config block and the mermaid module that imports from a CDN
_CDN_BLOCKS = (
    re.compile(r'<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->', re.S),
    re.compile(r'<script type="module">\s*document\.addEventListener\("DOMContentLoaded".*?mermaid.*?</script>',
               re.S),
)


def mathjax_source() -> Path:
    """The ``es5`` folder of MathJax 3 shipped by django-static-mathjax (installed by the docs extra)."""
    try:
        import mathjax  # the package django-static-mathjax: static files only
    except ImportError as err:
        raise RuntimeError("MathJax is missing: pip install -e '.[docs]' (package django-static-mathjax)") from err
    es5 = Path(next(iter(mathjax.__path__))) / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise RuntimeError(f"no tex-chtml.js in {es5}: reinstall django-static-mathjax")
    return es5


NEEDS_TORCH = ("05_checking_pytorch.ipynb", "06_checking_functional_models.ipynb")
"""Notebooks that run a PyTorch model."""


def on_pre_build(config: Any) -> None:
    """Stop early, saying what to install, when the notebooks are to run and PyTorch is missing."""
    jupyter = config["plugins"].get("mkdocs-jupyter")
    executes = bool(jupyter is not None and jupyter.config.get("execute"))
    if executes and importlib.util.find_spec("torch") is None:
        raise PluginError(f"the site runs the notebooks, and {', '.join(NEEDS_TORCH)} needs PyTorch: "
                          "pip install -e '.[docs,torch]' (CPU build: see the installation page), "
                          "or build without running them: SPARSECNN_DOCS_EXECUTE=false mkdocs build")


@event_priority(100)            # before mkdocs-jupyter's on_files, which wraps the .ipynb files
def on_files(files: Files, config: Any) -> Files:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        files.append(File(f"notebooks/{path.name}", src_dir=str(NOTEBOOKS.parent), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


_HEADING_ID = re.compile(r'<h[1-6][^>]*\sid="([^"]+)"')


def _toc_items(items: Any) -> list[Any]:
    """The items of a table of contents, depth first (the order of the headings on the page)."""
    flat = []
    for item in items:
        flat.append(item)
        flat.extend(_toc_items(item.children))
    return flat


def match_toc_to_headings(toc: Any, content: str) -> None:
    """Point the notebook page's table of contents at the ids its headings really have.

    mkdocs-jupyter takes the table of contents from Python-Markdown, whose anchors leave out a
    heading's code spans (``## 1. The library: `net.objective``` gives ``#1-the-library``), while
    nbconvert's heading ids keep them (``1-the-library-netobjective``): such links led nowhere.
    The headings come in the same order in both, so each item takes the id of its heading.
    """
    items = _toc_items(toc)
    ids = _HEADING_ID.findall(content)
    if len(items) == len(ids):
        for item, anchor in zip(items, ids, strict=True):
            item.id = anchor


def on_page_context(context: Any, page: Any, config: Any, nav: Any) -> Any:
    """Notebook pages without the right-hand table of contents: their code and pictures get the width.
    The table of contents, still shown in the navigation on a narrow screen, links the real heading ids."""
    if page.file.src_uri.endswith(".ipynb"):
        page.meta.setdefault("hide", [])
        if "toc" not in page.meta["hide"]:
            page.meta["hide"].append("toc")
        match_toc_to_headings(page.toc, page.content or "")
    return context


def on_post_page(output: str, page: Any, config: Any) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        for block in _CDN_BLOCKS:
            output = block.sub("", output)
    return output


def on_post_build(config: Any) -> None:
    dest = Path(config["site_dir"]) / MATHJAX_DEST
    shutil.copytree(mathjax_source(), dest, dirs_exist_ok=True)
