"""The documentation site as a reader sees it: built, served locally, opened in headless Chromium.

The site is built once with ``mkdocs build --strict`` (the notebooks executed, as on the published
site), served from ``127.0.0.1`` by a local ``http.server`` thread, and opened in headless Chromium
with every other host unreachable (``--host-resolver-rules``), so the math can only render if MathJax
is served by the site itself.  For the "Equations and code" page and one notebook page the test
reads the DOM after the scripts ran (``--dump-dom``) and asserts that

- MathJax produced rendered math elements (``mjx-container``), one for every formula of the page;
- no TeX source is left in the text a reader sees (outside code blocks and the rendered math);
- the notebook page holds its pictures (PNG images produced when the notebook ran);
- an API page renders the formulas its docstrings write with ``:math:``;

and saves a screenshot of each page, 1280 px wide, in a folder printed in the test output
(``SPARSECNN_SITE_ARTEFACTS`` chooses the folder).  Marked ``site``; skipped, with the reason, where
Chromium or the docs extra (``pip install -e '.[docs]'``) is missing.  ``.ci/run`` installs Chromium
with apt-get where it can.
"""

from __future__ import annotations

import base64
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1280
NOTEBOOK_PAGE = "notebooks/01_operators/"
EQUATIONS_PAGE = "equations/"
API_PAGES = ("api/notation/", "api/equations/")
"""An API page: its docstrings write formulas with Sphinx's :math: role and ``.. math::``."""

TEX_LEFT = re.compile(r"\\[A-Za-z]+|\\[(\[]|\$\$|\$[^$\s][^$]*\$")
"""TeX source: a control word (``\\partial``), a ``\\(`` or ``\\[`` delimiter, or ``$...$``."""


def find_chromium() -> str | None:
    named = os.environ.get("CHROMIUM")
    if named:
        return named if shutil.which(named) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("Chromium not found (apt-get install -y chromium, or set CHROMIUM=/path/to/chrome): "
                    "the site was not checked in a browser")
    return found


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """The folder of the screenshots and DOM dumps, named in the test output even when it passes."""
    named = os.environ.get("SPARSECNN_SITE_ARTEFACTS")
    folder = Path(named) if named else tmp_path_factory.mktemp("site-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\ntests/test_site.py: screenshots and DOM dumps of the site in {folder}")
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with ``mkdocs build --strict``, the notebooks executed."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocs_jupyter", "mathjax"):
        pytest.importorskip(module, reason="the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", SPARSECNN_DOCS_EXECUTE="true")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"          # small problems in the notebooks: idle BLAS threads only slow them
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return out


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """The built site on http://127.0.0.1:<port>/, served by a thread of this process."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def chromium_run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with the network off: every host but 127.0.0.1 fails to resolve."""
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        "--hide-scrollbars", f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=20000",      # let MathJax finish typesetting before the dump
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def dump_dom(chromium: str, url: str, profile: Path) -> str:
    proc = chromium_run(chromium, profile, f"--window-size={WIDTH},1000", "--dump-dom", url)
    assert proc.returncode == 0 and "<html" in proc.stdout, f"chromium --dump-dom {url} failed:\n{proc.stderr[-3000:]}"
    return proc.stdout


def screenshot(chromium: str, url: str, profile: Path, path: Path, height: int) -> None:
    proc = chromium_run(chromium, profile, f"--window-size={WIDTH},{height}", f"--screenshot={path}", url)
    assert proc.returncode == 0 and path.is_file() and path.stat().st_size > 10_000, (
        f"chromium --screenshot {url} failed:\n{proc.stderr[-3000:]}")
    print(f"screenshot of {url}: {path}")


class PageText(HTMLParser):
    """What a reader sees as text: outside scripts, styles, code blocks, rendered math and the hidden
    copies of the notebooks' code cells (``clipboard-copy-txt``, the copy button's source).

    Also counts the rendered math (``mjx-container``), the formulas arithmatex marked
    (``class="arithmatex"``) and the images, with their ``src``.
    """

    SKIP = {"script", "style", "code", "pre", "mjx-container", "textarea", "svg", "title"}
    SKIP_CLASSES = {"clipboard-copy-txt"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []      # open elements, and whether each hides its text
        self.text: list[str] = []
        self.rendered = 0
        self.arithmatex = 0
        self.images: list[str] = []

    def hidden(self) -> bool:
        return any(skip for _, skip in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if tag == "mjx-container":
            self.rendered += 1
        if "arithmatex" in classes:
            self.arithmatex += 1
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag not in self.VOID:
            self.stack.append((tag, tag in self.SKIP or bool(classes & self.SKIP_CLASSES)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        for k in range(len(self.stack) - 1, -1, -1):     # close up to the matching open element
            if self.stack[k][0] == tag:
                del self.stack[k:]
                break

    def handle_data(self, data: str) -> None:
        if not self.hidden():
            self.text.append(data)


def read_page(html: str) -> PageText:
    page = PageText()
    page.feed(html)
    return page


def tex_left(page: PageText) -> list[str]:
    text = " ".join(page.text)
    return sorted({text[max(m.start() - 40, 0):m.end() + 40].replace("\n", " ") for m in TEX_LEFT.finditer(text)})


def test_site_page_text_reader_finds_unrendered_tex() -> None:
    """The checker itself: TeX outside rendered math is found, inside code or rendered math it is not."""
    raw = read_page('<p>see <span class="arithmatex">\\(\\partial \\xi_i\\)</span> and $a_{i}$</p>')
    assert raw.arithmatex == 1 and raw.rendered == 0 and tex_left(raw)
    assert {"\\(", "\\partial", "$a_{i}$"} <= set(TEX_LEFT.findall(" ".join(raw.text)))
    done = read_page('<p><span class="arithmatex"><mjx-container><mjx-math>x</mjx-math></mjx-container>'
                     '</span> costs $5 and <code>\\partial</code></p>'
                     '<div class="clipboard-copy-txt"><div>print("a\\n")</div></div><p>after</p>')
    assert done.arithmatex == 1 and done.rendered == 1 and tex_left(done) == []
    assert "after" in " ".join(done.text)


def test_site_no_page_loads_from_another_host(site: Path) -> None:
    """Scripts, stylesheets and images come from the site itself (it must work offline)."""
    external = re.compile(r'<(?:script|img|iframe)[^>]*\ssrc="(?:https?:)?//|<link[^>]*\shref="(?:https?:)?//'
                          r'|import\(?\s*["\']https?://')
    offenders = [str(p.relative_to(site)) for p in site.rglob("*.html")
                 if external.search(p.read_text(encoding="utf-8"))]
    assert not offenders, f"pages that load from another host: {offenders}"
    assert (site / "assets" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not served by the site"


class Links(HTMLParser):
    """The ``id``s of a page and the ``href``s of its links."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"] or "")
        if tag == "a" and a.get("href") is not None:
            self.hrefs.append(a["href"] or "")


def broken_links(site: Path) -> list[str]:
    """Links between the site's pages whose page or ``#anchor`` does not exist (``404.html``, whose
    links are absolute by design, is left out)."""
    pages = {}
    for path in site.rglob("*.html"):
        reader = Links()
        reader.feed(path.read_text(encoding="utf-8"))
        pages[path.resolve()] = reader
    broken = []
    for path, reader in pages.items():
        if path.name == "404.html":
            continue
        for href in reader.hrefs:
            url = urllib.parse.urlsplit(href)
            if url.scheme or href.startswith(("//", "mailto:")):
                continue
            target = (path.parent / urllib.parse.unquote(url.path)).resolve() if url.path else path
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(site.resolve())}: {href}"
            if not target.exists():
                broken.append(f"{where} (no such file)")
            elif url.fragment and target.suffix == ".html" and \
                    urllib.parse.unquote(url.fragment) not in pages[target].ids:
                broken.append(f"{where} (no such anchor)")
    return broken


def test_site_broken_links_reader_finds_missing_pages_and_anchors(tmp_path: Path) -> None:
    """The checker itself, on a two-page site."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text('<h2 id="x">x</h2><a href="#x">ok</a><a href="#y">no</a>'
                                               '<a href="../b/#z">no</a><a href="../c/">no</a>'
                                               '<a href="https://example.org/#q">external</a>')
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "index.html").write_text('<a href="../a/#x">ok</a>')
    assert broken_links(tmp_path) == ["a/index.html: #y (no such anchor)", "a/index.html: ../b/#z (no such anchor)",
                                      "a/index.html: ../c/ (no such file)"]


def test_site_internal_links_resolve(site: Path) -> None:
    """Every link between pages, tables of contents included, reaches its page and its anchor."""
    broken = broken_links(site)
    assert not broken, f"{len(broken)} broken links on the site: {broken[:10]}"


def test_site_equations_page_math_rendered(chromium: str, server: str, artefacts: Path,
                                           tmp_path: Path) -> None:
    html = dump_dom(chromium, server + EQUATIONS_PAGE, tmp_path / "profile")
    page = read_page(html)
    assert page.arithmatex >= 40, f"the equations page marks only {page.arithmatex} formulas"
    assert page.rendered >= page.arithmatex, (
        f"MathJax rendered {page.rendered} of the {page.arithmatex} formulas of the equations page")
    assert 'jax="CHTML"' in html
    left = tex_left(page)
    assert not left, f"TeX source left unrendered on the equations page: {left[:5]}"
    (artefacts / "equations.html").write_text(html, encoding="utf-8")
    screenshot(chromium, server + EQUATIONS_PAGE, tmp_path / "profile", artefacts / "equations.png", 2400)


def test_site_notebook_page_has_pictures_and_math(chromium: str, server: str, artefacts: Path,
                                                  tmp_path: Path) -> None:
    html = dump_dom(chromium, server + NOTEBOOK_PAGE, tmp_path / "profile")
    page = read_page(html)
    pngs = [src for src in page.images if src.startswith("data:image/png;base64,")]
    assert len(pngs) >= 2, f"the notebook page {NOTEBOOK_PAGE} shows {len(pngs)} PNG pictures"
    for src in pngs:
        data = base64.b64decode(src.split(",", 1)[1])
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, "a picture of the notebook is not a PNG"
    assert page.rendered >= 10, f"MathJax rendered {page.rendered} formulas on {NOTEBOOK_PAGE}"
    left = tex_left(page)
    assert not left, f"TeX source left unrendered on {NOTEBOOK_PAGE}: {left[:5]}"
    (artefacts / "notebook-01.html").write_text(html, encoding="utf-8")
    screenshot(chromium, server + NOTEBOOK_PAGE, tmp_path / "profile", artefacts / "notebook-01.png", 3600)


@pytest.mark.parametrize("api_page", API_PAGES)
def test_site_api_page_docstring_math_rendered(chromium: str, server: str, tmp_path: Path, api_page: str) -> None:
    html = dump_dom(chromium, server + api_page, tmp_path / "profile")
    page = read_page(html)
    assert page.arithmatex >= 5, f"{api_page}: only {page.arithmatex} formulas from the docstrings"
    assert page.rendered >= page.arithmatex, f"{api_page}: MathJax rendered {page.rendered} of {page.arithmatex}"
    left = tex_left(page)
    assert not left, f"TeX source left unrendered on {api_page}: {left[:5]}"
