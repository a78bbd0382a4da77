"""Render the package's reST-flavoured docstrings as Markdown for the API reference.

The docstrings are written to read well as plain text in an editor, with a few
reStructuredText habits. mkdocstrings renders them as Markdown, so this Griffe extension
rewrites those habits when the package is loaded (nothing in the source changes):

* ``:func:`name```, ``:class:`~pkg.Name``` and the other Sphinx roles become links to the
  object in the API reference when it is rendered there, code spans otherwise;
* a paragraph ending in ``::`` (reST's "a literal block follows") ends in ``:``;
* ``>>>`` examples become fenced ``pycon`` blocks, and reST simple tables (rows between
  lines of ``====``) fenced ``text`` blocks, so that Markdown keeps their layout;
* ``#:`` comments on or above a module or class attribute (Sphinx's attribute docs)
  become that attribute's docstring.
"""
from __future__ import annotations

import re

import griffe

#: Modules rendered in docs/api/: a role naming an object in one of them becomes a link.
RENDERED_MODULES = ("backend", "cpu", "files", "config", "functional", "fast", "module", "layers", "sublayers", "parallel", "validation", "losses", "transformer", "decoding",
                    "optim", "optim_state", "schedules", "training", "checkpoint", "gradcheck", "interop", "vocab", "plotting", "attention_plots", "figures",
                    "codon")

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj):`(~?)\.?([^`]+)`")
_TABLE_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _walk(obj):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


class RstToMarkdown(griffe.Extension):
    """See the module docstring."""

    def on_package(self, *, pkg, **kwargs):
        self.package = pkg
        for obj in _walk(pkg):
            if obj.is_attribute and obj.docstring is None:
                self._attribute_comment(obj)
            if obj.docstring is not None:
                obj.docstring.value = self._convert(obj.docstring.value, obj)

    # -- #: comments -------------------------------------------------------------------
    @staticmethod
    def _attribute_comment(attr):
        try:
            lines = attr.lines_collection[attr.filepath]
        except (KeyError, TypeError, AttributeError):
            return
        if not attr.lineno or attr.lineno > len(lines):
            return
        here = lines[attr.lineno - 1]
        text = []
        if "#:" in here:
            text.append(here.split("#:", 1)[1].strip())
        else:
            i = attr.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#:"):
                text.insert(0, lines[i].strip()[2:].strip())
                i -= 1
        if text:
            attr.docstring = griffe.Docstring(" ".join(text), parent=attr)

    # -- roles ---------------------------------------------------------------------------
    def _lookup(self, path):
        prefix = self.package.path + "."
        if not path.startswith(prefix):
            return None
        try:
            target = self.package[path[len(prefix):]]
            return target.final_target if target.is_alias else target
        except Exception:  # not found, or an alias to something outside the package
            return None

    def _target(self, name, obj):
        """The path of the rendered object that ``name`` refers to from ``obj``, or None."""
        scopes, scope = [], obj
        while scope is not None:
            scopes.append(scope.path)
            scope = scope.parent
        for path in [name] + [f"{s}.{name}" for s in scopes]:
            target = self._lookup(path)
            if target is None:
                continue
            parts = target.path.split(".")
            if (parts[0] == self.package.path and len(parts) >= 2 and parts[1] in RENDERED_MODULES
                    and not any(p.startswith("_") for p in parts)):
                return target.path
            return None
        return None

    def _role(self, match, obj):
        short, name = match.group(1) == "~", match.group(2)
        label = name.rsplit(".", 1)[-1] if short else name
        target = self._target(name, obj)
        return f"[`{label}`][{target}]" if target else f"`{label}`"

    # -- the whole docstring ---------------------------------------------------------------
    def _convert(self, text, obj):
        text = _ROLE.sub(lambda m: self._role(m, obj), text)
        out, lines, i = [], text.split("\n"), 0
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith(">>>"):                     # doctest block
                block = []
                while i < len(lines) and lines[i].strip():
                    block.append(lines[i])
                    i += 1
                out += ["```pycon"] + block + ["```"]
                continue
            if _TABLE_RULE.match(line):                              # reST simple table
                block, rules = [], 0
                while i < len(lines) and rules < 3:
                    rules += bool(_TABLE_RULE.match(lines[i]))
                    block.append(lines[i])
                    i += 1
                out += ["```text"] + block + ["```"]
                continue
            if line.rstrip().endswith("::"):                         # literal block follows
                line = line.rstrip()[:-1]
                if not line.strip() or line.strip() == ":":
                    line = ""
            out.append(line)
            i += 1
        return "\n".join(out)
