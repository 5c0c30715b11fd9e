// MathJax 3 for the sparsecnn site, loaded before assets/mathjax/tex-chtml.js (served from this site).
// Markdown pages: pymdownx.arithmatex wraps each formula in an element of class "arithmatex", holding
// \( \) or \[ \].  Notebook pages: nbconvert keeps the markdown cells' $ $ and $$ $$ in elements of
// class "jp-RenderedMarkdown".  Everything else (code, tables of numbers) is left alone.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
    macros: {
      vec: "\\operatorname{vec}",
      mat: "\\operatorname{mat}",
      pad: "\\operatorname{pad}",
      Ppad: "P_{\\mathrm{pad}}",
      Pphi: "P_{\\phi}",
      Ppool: "P_{\\mathrm{pool}}"
    }
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown"
  },
  chtml: { displayAlign: "left", displayIndent: "1em" }
};
