// MathJax 3 for the sparsecnn site, loaded before assets/mathjax/tex-chtml.js (served from this site).
// Where math is looked for:
// - Markdown pages: pymdownx.arithmatex wraps each formula in an element of class "arithmatex",
//   holding \( \) or \[ \];
// - notebook pages: nbconvert keeps the markdown cells' $ $ and $$ $$ inside an element of class
//   "jp-RenderedMarkdown", in its paragraphs, headings and tables (elements without a class);
// - the table of contents of a notebook page repeats its headings in "md-ellipsis" spans.
// Every other element with a class (code, outputs, navigation, API signatures) is skipped, so a
// dollar sign elsewhere stays a dollar sign.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: "[^ ]+",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown|md-ellipsis"
  },
  chtml: { displayAlign: "left", displayIndent: "1em" }
};
