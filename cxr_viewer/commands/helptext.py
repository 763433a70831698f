"""Plain ``--help`` text from reStructuredText docstrings, for ``cxr-viewer`` and ``cxr-train``.

The commands' descriptions are their modules' docstrings, written in reStructuredText for
readers of the code: double-backtick literals, roles such as ``:func:`name```, and ``::`` before
an example block. A terminal would show that markup raw, and argparse's default formatter
would run the example lines into one paragraph. :class:`PlainHelpFormatter` removes the markup,
re-wraps prose paragraphs to the terminal's width and keeps literal blocks (after ``::``) and
list items on their own lines.
"""

from __future__ import annotations

import argparse
import inspect
import re
import textwrap

#: a role, e.g. :func:`pkg.name`, :py:class:`Name`, :mod:`pkg`, :attr:`~pkg.Class.attr`
_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`(~?)([^`]+)`")
#: an inline literal: ``text`` (may span a line break in a wrapped docstring)
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
#: single backticks, used in docstrings and help strings for code
_TICKS = re.compile(r"`([^`\n]+)`")
#: a list item: "* text", "- text"
_BULLET = re.compile(r"^([*-]) +")


def strip_markup(text: str) -> str:
    """``text`` without reStructuredText inline markup.

    ``:func:`pkg.name``` becomes ``pkg.name`` (``:func:`~pkg.name``` its last part, ``name``),
    a double- or single-backtick literal its content.
    """
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    text = _LITERAL.sub(lambda m: m.group(1), text)
    return _TICKS.sub(lambda m: m.group(1), text)


def plain_text(doc: str, width: int = 79, indent: str = "") -> str:
    """A docstring as plain terminal text: markup removed, prose filled to ``width``.

    A paragraph ending in ``::`` ends in ``:`` and the block after it is kept line by line (as
    reStructuredText shows a literal block); list items start their own lines.
    """
    blocks = re.split(r"\n[ \t]*\n", inspect.cleandoc(doc))
    out: list[str] = []
    literal_next = False
    for block in blocks:
        if not block.strip():
            continue
        if literal_next:
            out.append(textwrap.indent(block, indent))
            literal_next = block.rstrip().endswith("::")
            continue
        literal_next = block.rstrip().endswith("::")
        if literal_next:
            block = re.sub(r"\s*::$", ":", block.rstrip()) if block.rstrip() != "::" else ""
        items = _split_items(strip_markup(block))
        filled = [
            textwrap.fill(
                " ".join(item.split()),
                width,
                initial_indent=indent,
                subsequent_indent=indent + ("  " if _BULLET.match(item) else ""),
                break_on_hyphens=False,
            )
            for item in items
        ]
        if filled:
            out.append("\n".join(filled))
    return "\n\n".join(out)


def _split_items(block: str) -> list[str]:
    """A block's list items, one string each; a prose paragraph is one item."""
    items: list[str] = []
    for line in block.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if _BULLET.match(stripped) or not items:
            items.append(stripped)
        else:
            items[-1] += " " + stripped
    return items


class PlainHelpFormatter(argparse.HelpFormatter):
    """argparse's formatter for descriptions and epilogs written as reStructuredText
    docstrings, and for argument help strings with backticks (:func:`plain_text`)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return plain_text(text, width, indent)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return super()._split_lines(strip_markup(text), width)
