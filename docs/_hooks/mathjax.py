"""MkDocs hook: ship MathJax with the site, so that its math renders offline.

The pages' formulas are typeset in the browser by MathJax. Loaded from a CDN, they would
show as raw TeX to a reader without a network (on a train, on a cluster's compute node,
from a copy of the built site). The MathJax files come instead from a Python package,
``django-static-mathjax`` (MathJax 3.2.2, Apache-2.0, in the ``dev`` extra; nothing of
Django is used: the package is MathJax's files and an empty ``__init__.py``), and are
copied into the site under ``javascripts/mathjax/``:

* ``tex-mml-chtml.js``: the script the CDN served (TeX and MathML input, HTML output);
* ``input/tex/extensions/``: the TeX extensions that script loads by itself when a page
  uses one of their macros (``\\cancel``, ``\\boldsymbol``...), from beside the script;
* ``output/chtml/fonts/woff-v2/``: the fonts of the HTML output, also found beside it;
* ``LICENSE``: MathJax's licence.

Not shipped: the speech and explorer extensions of MathJax's context menu (``a11y/``,
``sre/``, 4 MB), which a reader can switch on by hand; offline they would not load.

``mkdocs.yml`` names the script by that path (``extra_javascript``), and
``tests/test_docs.py`` checks that no built page loads a script from the network.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

#: where the files go in the built site
SITE_FOLDER = "javascripts/mathjax"
SHIPPED = ("tex-mml-chtml.js", "input/tex/extensions/*.js", "output/chtml/fonts/woff-v2/*.woff")
INSTALL = 'pip install django-static-mathjax==3.2.2.1   (or: pip install -e ".[dev]")'


def mathjax_root() -> Path:
    """The folder of MathJax's ``es5`` build in the installed package; one clear error if absent."""
    spec = importlib.util.find_spec("mathjax")
    root = Path(spec.origin).parent / "static" / "mathjax" if spec and spec.origin else None
    if root is None or not (root / "es5" / SHIPPED[0]).is_file():
        raise PluginError(f"MathJax is not installed, so the site's math could not render offline: {INSTALL}")
    return root


def on_files(files, config):
    root = mathjax_root()
    es5 = root / "es5"
    shipped = [path for pattern in SHIPPED for path in sorted(es5.glob(pattern))]
    for path in shipped:
        files.append(File.generated(config, f"{SITE_FOLDER}/{path.relative_to(es5).as_posix()}",
                                    abs_src_path=str(path)))
    files.append(File.generated(config, f"{SITE_FOLDER}/LICENSE", abs_src_path=str(root / "LICENSE")))
    return files
