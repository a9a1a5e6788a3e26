"""The optional mypy plugin (`asyncflow.mypy`): run mypy with it, in this process
(`mypy.api.run`), on files that must pass and on lines that must still be errors.

One mypy run with the plugin checks `mypy_plugin/accepted.py` (every call passes),
`mypy_plugin/rejected.py` (exactly the lines marked `# rejected: CODE` are errors,
with that code) and `typing_checks.py` (its negative checks still fail: an ignore that
hides nothing is an error under `--strict`). A run without the plugin shows that the
plugin is what makes `accepted.py` pass. A cold mypy run costs seconds: `fault`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ACCEPTED = HERE / "mypy_plugin" / "accepted.py"
REJECTED = HERE / "mypy_plugin" / "rejected.py"
TYPING_CHECKS = HERE / "typing_checks.py"
# The project's [tool.mypy] settings, with or without the plugin.
CONFIG = """\
[mypy]
strict = True
python_version = 3.10
warn_unreachable = True
{plugins}
[mypy-cloudpickle]
ignore_missing_imports = True
"""
ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")
MARK = re.compile(r"# rejected: (?P<code>[a-z-]+)$")


def run_mypy(tmp: Path, files: list[Path], plugin: bool) -> tuple[int, list[tuple[str, int, str]]]:
    """mypy's exit status and its errors as (file name, line, code)."""
    from mypy import api

    config = tmp / "mypy.ini"
    config.write_text(CONFIG.format(plugins="plugins = asyncflow.mypy" if plugin else ""))
    out, err, status = api.run(
        ["--config-file", str(config), "--cache-dir", str(tmp / "cache"), *map(str, files)]
    )
    assert status in (0, 1), err or out  # 2: mypy itself failed (a crash in the plugin)
    errors = [
        (Path(m["path"]).name, int(m["line"]), m["code"])
        for m in map(ERROR.match, out.splitlines())
        if m
    ]
    return status, errors


def marked_lines(path: Path) -> set[tuple[str, int, str]]:
    lines = path.read_text().splitlines()
    return {
        (path.name, number, m["code"])
        for number, line in enumerate(lines, 1)
        if (m := MARK.search(line))
    }


@pytest.mark.fault
@pytest.mark.timeout(180)
def test_the_plugin_accepts_futures_and_still_rejects_wrong_types(tmp_path: Path) -> None:
    status, errors = run_mypy(tmp_path, [ACCEPTED, REJECTED, TYPING_CHECKS], plugin=True)
    expected = marked_lines(REJECTED)
    assert len(expected) >= 15  # the marks were found
    assert sorted(set(errors)) == sorted(expected)
    assert len(errors) == len(set(errors)) + 1  # `total.map([1, 2])`: one per list item
    assert status == 1


@pytest.mark.fault
@pytest.mark.timeout(180)
def test_without_the_plugin_futures_are_rejected(tmp_path: Path) -> None:
    _, errors = run_mypy(tmp_path, [ACCEPTED], plugin=False)
    lines = {line for _, line, _ in errors}
    source = ACCEPTED.read_text().splitlines()
    without = {n for n, text in enumerate(source, 1) if "without the plugin: an error" in text}
    assert len(without) >= 5
    assert without <= lines


def test_import_asyncflow_loads_neither_the_plugin_nor_mypy() -> None:
    code = (
        "import sys, asyncflow, asyncflow.futures, asyncflow.utilities.annotations\n"
        "print(sorted(m for m in sys.modules if m == 'mypy' or m.startswith(('mypy.', "
        "'asyncflow.mypy'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"
