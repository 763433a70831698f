"""``--help`` of ``cxr-viewer`` and ``cxr-train`` is plain text: no reStructuredText markup."""

from __future__ import annotations

import re

import pytest

from cxr_viewer import cli as viewer_cli
from cxr_viewer.commands.helptext import plain_text, strip_markup
from trainer import cli as train_cli

#: what reStructuredText markup looks like in a terminal: any backtick, a role, a "::"
MARKUP = re.compile(r"`|:[a-z]+:|::")


def test_strip_markup_removes_literals_roles_and_ticks():
    assert strip_markup("``cxr-train``: run ``a\nb``") == "cxr-train: run a\nb"
    assert strip_markup("see :func:`pkg.mod.fn` and :py:class:`Cls`") == "see pkg.mod.fn and Cls"
    assert strip_markup(":func:`~pkg.mod.to_uint8` then `cxr-viewer info -h`") == (
        "to_uint8 then cxr-viewer info -h"
    )
    assert strip_markup("it's 'quoted' -- unchanged") == "it's 'quoted' -- unchanged"


def test_plain_text_fills_prose_and_keeps_literal_blocks_and_items():
    doc = """Title line with ``markup``.

    A paragraph that is long enough to be wrapped over more than one line of forty
    characters. Examples::

        cmd one --flag     # stays on its own line
        cmd two

    * first item, also long enough to wrap onto a second line here
    * second item
    """
    text = plain_text(doc, width=40)
    lines = text.splitlines()
    assert lines[0] == "Title line with markup."
    assert all(len(line) <= 40 for line in lines if not line.startswith("    cmd"))
    assert "characters. Examples:" in text and "::" not in text
    assert "    cmd one --flag     # stays on its own line\n    cmd two" in text
    first = lines.index("* first item, also long enough to wrap")
    assert lines[first + 1].startswith("  ") and lines[first + 2] == "* second item"


def _help(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "main, argv",
    [
        (train_cli.main, []),
        *((train_cli.main, [name]) for name in train_cli.COMMANDS),
        (viewer_cli.main, []),
        *((viewer_cli.main, [name]) for name in viewer_cli.COMMANDS),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v.__module__.split(".")[0],
)
def test_every_help_is_free_of_markup(main, argv, capsys):
    out = _help(main, argv, capsys)
    assert "usage:" in out and "options:" in out
    assert not MARKUP.findall(out), [line for line in out.splitlines() if MARKUP.search(line)]


def test_the_import_examples_keep_one_command_per_line(capsys):
    out = _help(train_cli.main, ["import"], capsys)
    examples = [
        line.strip() for line in out.splitlines() if line.startswith("    cxr-train import")
    ]
    assert len(examples) == 3 and all("-o b" in line for line in examples)
