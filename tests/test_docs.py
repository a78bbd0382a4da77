"""The documentation site: every backward page points at real code and real tests, and builds.

* Each page under ``docs/backward/`` must link to at least one function of the package that
  exists (``::: minitransformer.x.y`` blocks and ``[text][minitransformer.x.y]`` links are
  imported and looked up) and name at least one test that exists
  (``tests/test_x.py::test_name``: the file must define that function).
* Code quoted from the package (a fenced block titled with the file, e.g.
  ``python title="minitransformer/functional.py"``) must still be in that file, line for
  line: a derivation that quotes code which has changed is out of date.
* A Python block on a backward page that is followed by its printed output (a ``text``
  block) is run, and the gradient-check reports it prints must list the same names as the
  page shows, with errors on the same side of the tests' tolerance.
* With MkDocs installed, ``mkdocs build --strict`` must succeed: broken links, missing
  anchors and references to functions that no longer exist all fail it; and no built page
  loads a script from the network (MathJax ships with the site: the math renders offline).
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BACKWARD_PAGES = sorted((DOCS / "backward").glob("*.md"))
ALL_PAGES = sorted(DOCS.rglob("*.md"))

DOCS_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mathjax")
DOCS_INSTALL = ('pip install mkdocs==1.6.1 mkdocs-material==9.8.2 "mkdocstrings[python]==1.0.8" '
                "mkdocstrings-python==2.0.11 django-static-mathjax==3.2.2.1")

_DIRECTIVE = re.compile(r"^:::\s+(minitransformer(?:\.\w+)+)\s*$", re.M)
_AUTOREF = re.compile(r"\]\[(minitransformer(?:\.\w+)+)\]")
_TEST_NAME = re.compile(r"tests/(test_\w+\.py)::(test_\w+)")
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.M | re.S)
_REPORT_ROW = re.compile(r"^(\S+)\s+(\d\.\d\de[-+]\d\d)$")

#: The tolerance of the layer tests: a documented error below it must stay below it.
TOLERANCE = 1e-7


def _page_id(path: Path) -> str:
    return str(path.relative_to(DOCS))


def _resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and look the rest up with getattr."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def _defined_functions(test_file: Path) -> set[str]:
    tree = ast.parse(test_file.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _fences(text: str):
    """(info string, body) of every fenced code block, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in _FENCE.finditer(text)]


# --------------------------------------------------------------------------------------
# (a) every backward page names code and tests that exist
# --------------------------------------------------------------------------------------
def test_there_is_one_page_per_backward_pass():
    names = {p.stem for p in BACKWARD_PAGES}
    expected = {"index", "linear", "embedding", "softmax", "cross-entropy", "layer-norm", "dropout",
                "attention", "multi-head-attention", "encoder-layer", "decoder-layer", "transformer"}
    assert expected <= names, f"missing backward pages: {sorted(expected - names)}"


@pytest.mark.parametrize("page", BACKWARD_PAGES, ids=_page_id)
def test_backward_page_links_to_functions_that_exist(page):
    text = page.read_text(encoding="utf-8")
    references = set(_DIRECTIVE.findall(text)) | set(_AUTOREF.findall(text))
    assert references, f"{_page_id(page)} links to no function (use '::: minitransformer.x.y' or [x][minitransformer.x.y])"
    missing = []
    for dotted in sorted(references):
        try:
            obj = _resolve(dotted)
        except (ImportError, AttributeError):
            missing.append(dotted)
            continue
        assert obj is not None, dotted
    assert not missing, f"{_page_id(page)} refers to names that do not exist: {missing}"


@pytest.mark.parametrize("page", BACKWARD_PAGES, ids=_page_id)
def test_backward_page_names_tests_that_exist(page):
    text = page.read_text(encoding="utf-8")
    named = sorted(set(_TEST_NAME.findall(text)))
    assert named, f"{_page_id(page)} names no test (write it as tests/test_x.py::test_name)"
    problems = []
    for file_name, function in named:
        test_file = ROOT / "tests" / file_name
        if not test_file.is_file():
            problems.append(f"tests/{file_name} does not exist")
        elif function not in _defined_functions(test_file):
            problems.append(f"tests/{file_name} defines no {function}")
    assert not problems, f"{_page_id(page)}: " + "; ".join(problems)


# --------------------------------------------------------------------------------------
# quoted code is still the code
# --------------------------------------------------------------------------------------
_QUOTES = [(page, info, body) for page in ALL_PAGES for info, body in _fences(page.read_text(encoding="utf-8"))
           if 'title="minitransformer/' in info]


@pytest.mark.parametrize("page, info, body", _QUOTES,
                         ids=[f"{_page_id(p)}:{i}" for i, (p, _, _) in enumerate(_QUOTES)])
def test_quoted_code_is_still_in_the_source(page, info, body):
    source_path = re.search(r'title="([^"]+)"', info).group(1)
    source = ROOT / source_path
    assert source.is_file(), f"{_page_id(page)} quotes {source_path}, which does not exist"
    source_lines = {line.strip() for line in source.read_text(encoding="utf-8").splitlines()}
    stale = [line for line in body.splitlines() if line.strip() and line.strip() not in source_lines]
    assert not stale, (f"{_page_id(page)} quotes lines that are no longer in {source_path} -- update the quote "
                       f"(and the derivation around it):\n" + "\n".join(stale))


# --------------------------------------------------------------------------------------
# the examples on the backward pages run, and print what the page says
# --------------------------------------------------------------------------------------
def _examples():
    found = []
    for page in BACKWARD_PAGES:
        fences = _fences(page.read_text(encoding="utf-8"))
        for (info, body), (next_info, next_body) in zip(fences, fences[1:]):
            if info == "python" and next_info == "text":
                slow = "Transformer(" in body
                marks = [pytest.mark.slow] if slow else []
                found.append(pytest.param(page, body, next_body, marks=marks,
                                          id=f"{_page_id(page)}:{len(found)}"))
    return found


def _report_rows(output: str):
    """(name, error) rows of the gradient-check reports in some printed output."""
    rows, in_report = [], False
    for line in output.splitlines():
        if re.match(r"^name\s+relative error$", line.strip()):
            in_report = True
            continue
        match = _REPORT_ROW.match(line.strip())
        if in_report and match:
            rows.append((match.group(1), float(match.group(2))))
        else:
            in_report = False
    return rows


@pytest.mark.parametrize("page, code, documented", _examples())
def test_backward_page_example_runs_and_prints_what_the_page_shows(page, code, documented):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"<example in {_page_id(page)}>", "exec"), {"__name__": "__doc_example__"})
    expected, actual = _report_rows(documented), _report_rows(out.getvalue())
    assert [n for n, _ in actual] == [n for n, _ in expected], (
        f"{_page_id(page)}: the example's reports name other inputs or parameters than the page shows; "
        f"printed:\n{out.getvalue()}")
    for (name, shown), (_, measured) in zip(expected, actual):
        if shown <= TOLERANCE:
            assert measured <= TOLERANCE, f"{_page_id(page)}: {name} now has relative error {measured:.2e}"
        else:
            assert measured > TOLERANCE, f"{_page_id(page)}: {name} was shown failing, now {measured:.2e}"


# --------------------------------------------------------------------------------------
# (a') no page or notebook holds a control character
# --------------------------------------------------------------------------------------
#: Every byte below 0x20 except the newline, and DEL. Tabs count: no page needs one, and a
#: TAB or form feed in a page is nearly always a backslash escape gone wrong (Python reads
#: "\texttt" as TAB + "exttt", "\frac" as form feed + "rac"), which renders as garbage.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
TEXT_FILES = sorted(set(ALL_PAGES) | set((ROOT / "notebooks").rglob("*.py"))
                    | set((ROOT / "notebooks").rglob("*.md")) | {ROOT / "README.md"})


def _control_characters(text: str) -> list[str]:
    """``line N: 'U+0009' in '...context...'`` for each control character of ``text``."""
    found = []
    for number, line in enumerate(text.split("\n"), start=1):
        for match in _CONTROL.finditer(line):
            start = max(0, match.start() - 20)
            found.append(f"line {number}: U+{ord(match.group()):04X} in {line[start:match.end() + 20]!r}")
    return found


def test_control_characters_are_found():
    assert _control_characters("a\n$\\frac12$\tb") == ["line 2: U+0009 in '$\\\\frac12$\\tb'"]
    assert _control_characters("\x0crac12") and _control_characters("a\r\n")
    assert _control_characters("plain text\nand a newline\n") == []


@pytest.mark.parametrize("path", TEXT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_control_characters(path):
    found = _control_characters(path.read_text(encoding="utf-8"))
    assert not found, (f"{path.relative_to(ROOT)} holds control characters (a backslash escape "
                       f"written into a Python string? use a raw string, r\"...\"): " + "; ".join(found))


# --------------------------------------------------------------------------------------
# (b) the site builds in strict mode
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    missing = [name for name in DOCS_TOOLS if importlib.util.find_spec(name.split(".")[0]) is None
               or (name == "mkdocstrings_handlers.python" and importlib.util.find_spec(name) is None)]
    if missing:
        pytest.skip(f"the documentation tools are not installed ({', '.join(missing)}): {DOCS_INSTALL}")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + log[-6000:]
    site = tmp_path / "site"
    for page in ["index.html", "backward/layer-norm/index.html", "api/functional/index.html"]:
        assert (site / page).is_file(), f"the build did not produce {page}"
    # the math renders offline: MathJax, its fonts and its extensions are in the site ...
    mathjax = site / "javascripts" / "mathjax"
    for shipped in ["tex-mml-chtml.js", "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
                    "input/tex/extensions/cancel.js", "LICENSE"]:
        assert (mathjax / shipped).is_file(), f"the site lacks MathJax's {shipped}"
    # ... and no page loads a script, a stylesheet or a font from the network
    pages = sorted(site.rglob("*.html"))
    remote = {f"{page.relative_to(site)}: {src}" for page in pages
              for src in _loaded_sources(page.read_text(encoding="utf-8")) if _is_remote(src)}
    assert not remote, "pages load files from the network: " + "; ".join(sorted(remote)[:5])
    layer_norm = (site / "backward/layer-norm/index.html").read_text(encoding="utf-8")
    assert "javascripts/mathjax/tex-mml-chtml.js" in layer_norm and 'class="arithmatex"' in layer_norm


_SCRIPT_SRC = re.compile(r"<script\b[^>]*?\bsrc\s*=\s*[\"']?([^\"'\s>]+)", re.I)
_LINK_HREF = re.compile(r"<link\b[^>]*?\bhref\s*=\s*[\"']?([^\"'\s>]+)", re.I)
#: ``<link rel=...>`` kinds that make the browser fetch the file (a canonical link does not).
_FETCHED_LINKS = re.compile(r"\brel\s*=\s*[\"']?(stylesheet|preconnect|preload|icon)", re.I)


def _loaded_sources(html: str) -> list[str]:
    """The addresses a page makes the browser fetch: its scripts, and its stylesheets,
    fonts and icons (``<link rel="stylesheet" ...>`` and the like), in order."""
    links = [m.group(0) for m in re.finditer(r"<link\b[^>]*>", html, re.I)]
    return (_SCRIPT_SRC.findall(html)
            + [_LINK_HREF.search(link).group(1) for link in links
               if _FETCHED_LINKS.search(link) and _LINK_HREF.search(link)])


def _is_remote(src: str) -> bool:
    """Whether a script's address reaches out of the site: a scheme (https:, http:, ...) or
    a scheme-relative ``//host/...``; a relative or root-relative path stays in the site."""
    return src.startswith("//") or re.match(r"^[a-z][a-z0-9+.-]*:", src, re.I) is not None


def test_remote_scripts_and_fonts_are_recognised():
    html = ('<script src="https://cdn.example.org/mathjax.js"></script><script src=//cdn.x/y.js>'
            "<script defer src='../javascripts/mathjax.js'></script><script>var a = 1;</script>"
            '<link rel="preconnect" href="https://fonts.gstatic.com" crossorigin>'
            '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
            '<link rel="stylesheet" href="../assets/stylesheets/main.css">'
            '<link rel="canonical" href="https://example.org/page/">')
    sources = _loaded_sources(html)
    assert sources == ["https://cdn.example.org/mathjax.js", "//cdn.x/y.js", "../javascripts/mathjax.js",
                       "https://fonts.gstatic.com", "https://fonts.googleapis.com/css?family=Roboto",
                       "../assets/stylesheets/main.css"]
    assert [_is_remote(s) for s in sources] == [True, True, False, True, True, False]
    assert not _is_remote("/assets/javascripts/bundle.js") and not _is_remote("search/main.js")


def test_the_demo_s_run_time_is_the_same_everywhere(capsys):
    """The README, the getting-started page and ``codon demo --help`` give one run time."""
    from minitransformer.cli import main

    with pytest.raises(SystemExit):
        main(["codon", "demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    started = " ".join((DOCS / "getting-started.md").read_text(encoding="utf-8").split())
    for text in (help_text, readme, started):
        assert "about five minutes" in text.lower()
    assert "ten at most" in help_text and "ten at most" in readme
    assert "10 minutes" not in help_text
