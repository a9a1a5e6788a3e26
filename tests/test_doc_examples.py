"""Every Python code block in README.md and docs/*.md runs, as a user would run it.

Each block runs as the `__main__` module (so `if __name__ == "__main__":` blocks run,
and process-pool workers receive its functions by value, as from a real script),
compiled under the Markdown file's name with its own line numbers, so a traceback
points at the page and line. A block that raises, or warns (warnings are errors here),
fails its test; `assert`s in blocks are the examples' own checks.

Two marks, each an HTML comment on the line right before the opening fence, invisible
on GitHub and on the site (docs/contributing.md says when to use them):

- `<!-- test: partial -->`: a fragment that cannot run alone (an API outline with
  `...` bodies, a cluster address that does not exist here). It is still compiled, so
  a syntax error fails.
- `<!-- test: continue -->`: runs in the namespace the previous block of the same file
  left, so a page can build one example over several blocks. The chain is one test,
  named after its first block.

Why no plugin: pytest-markdown-docs needs `--markdown-docs`, which also collects the
docstrings of every `.py` file pytest sees (helpers, typing checks), runs blocks
without `__name__` (a `__main__` guard silently skips its body), and its info-string
marks (`python notest`) stop Material's superfences from rendering the block.
pytest-examples' runner swaps `sys.modules["__main__"]` for good and, when an example
fails, builds a traceback that crashes pytest 9's report with an INTERNALERROR. This
collector is the few lines we need. The docstring examples are doctests, run by
tests/test_doctests.py.
"""

from __future__ import annotations

import re
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<info>[^`\n]*)$")
MARK = re.compile(r"^\s*<!--\s*test:\s*(?P<mark>partial|continue)\s*-->\s*$")
PYTHON = ("py", "python", "python3")


@dataclass
class Block:
    """One fenced Python block: where it is, its source, and its mark."""

    path: Path
    line: int  # of the first line of code (1-based)
    source: str
    mark: str | None

    def code(self) -> types.CodeType:
        """Compiled under the page's name, at the page's line numbers."""
        return compile("\n" * (self.line - 1) + self.source, str(self.path), "exec")


def blocks_in(path: Path) -> Iterator[Block]:
    """The fenced Python blocks of a Markdown file, in order (other languages and
    transcripts such as `pycon` are not programs: left out)."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, info = opening["indent"], opening["info"].split()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(indent + "```"))
        if info and info[0] in PYTHON:
            before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            mark = MARK.match(before)
            source = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
            yield Block(path, i + 2, source, mark["mark"] if mark else None)
        i = end + 1


@dataclass
class Chain:
    """A block to run and the blocks that continue it, in order."""

    blocks: list[Block] = field(default_factory=list)

    def __str__(self) -> str:
        first = self.blocks[0]
        more = f"+{len(self.blocks) - 1}" if len(self.blocks) > 1 else ""
        return f"{first.path.relative_to(ROOT)}:{first.line}{more}"


def collect(paths: list[Path]) -> tuple[list[Chain], list[Block]]:
    """(chains to run, partial blocks to compile) over the Markdown files."""
    chains: list[Chain] = []
    partial: list[Block] = []
    for path in paths:
        last: Chain | None = None
        for block in blocks_in(path):
            if block.mark == "partial":
                partial.append(block)
            elif block.mark == "continue":
                assert last is not None, f"{path}:{block.line}: nothing to continue"
                last.blocks.append(block)
            else:
                last = Chain([block])
                chains.append(last)
    return chains, partial


CHAINS, PARTIAL = collect(MARKDOWN)


@pytest.fixture
def as_main() -> Iterator[dict[str, Any]]:
    """A fresh `__main__` module's namespace, pytest's own put back afterwards. No
    `__file__`: a process pool's workers must not try to re-run a Markdown page."""
    main = sys.modules["__main__"]
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    try:
        yield module.__dict__
    finally:
        sys.modules["__main__"] = main


def test_the_collector_finds_the_blocks() -> None:
    assert len(CHAINS) >= 25
    files = {chain.blocks[0].path.name for chain in CHAINS}
    assert {"README.md", "semantics.md", "getting-started.md", "scripts.md"} <= files
    assert PARTIAL, "the partial mark is used and found"


def test_blocks_and_marks_are_read_as_written(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\na = 1\n```\n\n<!-- test: continue -->\n```python\nb = a\n```\n\n"
        "```bash\nls\n```\n\n<!-- test: partial -->\n\n```py\ndef f(): ...\n```\n\n"
        "- item\n\n  ```python\n  c = 1\n  ```\n"
    )
    blocks = list(blocks_in(page))
    assert [(b.line, b.mark, b.source) for b in blocks] == [
        (2, None, "a = 1\n"),
        (7, "continue", "b = a\n"),
        (17, "partial", "def f(): ...\n"),
        (23, None, "c = 1\n"),
    ]
    chains, partial = collect([page])
    assert [len(c.blocks) for c in chains] == [2, 1]
    assert partial == [blocks[2]]


def test_a_failing_block_fails_at_its_page_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\nraise ValueError(x)\n```\n")
    (block,) = blocks_in(page)
    with pytest.raises(ValueError, match="1") as caught:
        exec(block.code(), {})
    assert caught.traceback[-1].lineno + 1 == 5  # pytest's line numbers are 0-based
    assert str(caught.traceback[-1].path) == str(page)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("chain", CHAINS, ids=str)
def test_example_runs(chain: Chain, as_main: dict[str, Any]) -> None:
    for block in chain.blocks:
        exec(block.code(), as_main)


@pytest.mark.parametrize("block", PARTIAL, ids=lambda b: f"{b.path.name}:{b.line}")
def test_partial_example_compiles(block: Block) -> None:
    block.code()
