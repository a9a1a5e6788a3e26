"""Machine description, the markdown table (printed row by row), latest.json / latest.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._harness import Row

__all__ = ("HEADER", "format_row", "machine_info", "write_results")

HEADER = (
    "| scenario | case | N | unit | asyncflow | baseline | asyncflow/baseline | target | result |\n"
    "|---|---|---:|---|---:|---:|---:|---|---|"
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401  (only probing whether it is installed)
    except ImportError:
        return False
    return True


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _git_commit() -> str | None:
    """The commit, with "+modified" when asyncflow/ differs from it (what was measured)."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return None
    return commit + ("+modified" if _git("status", "--porcelain", "--", "asyncflow") else "")


def machine_info(use_uvloop: bool) -> dict[str, Any]:
    import asyncflow

    installed = _uvloop_installed()
    engine_uvloop = installed and os.environ.get("ASYNCFLOW_NO_UVLOOP", "") in ("", "0")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "asyncflow": asyncflow.__version__,
        "git_commit": _git_commit(),
        "uvloop_installed": installed,
        "uvloop_engine_loop": engine_uvloop,
        "uvloop_caller_loop": use_uvloop,
    }


def _fmt_value(row: Row) -> tuple[str, str, str]:
    if row.value is None:
        return "not available", "", ""
    value = row.value.fmt(row.digits)
    base = "" if row.baseline is None else row.baseline.fmt(row.digits)
    if row.baseline_name and row.baseline is not None:
        base = f"{base} {row.baseline_name}"
    elif row.baseline_name:
        base = row.baseline_name
    ratio = ""
    if row.ratio is not None:
        ratio = row.ratio.fmt(2 if row.ratio.median >= 0.1 else 4, "x")
    return value, base, ratio


def format_row(row: Row) -> str:
    value, base, ratio = _fmt_value(row)
    n = "" if row.n is None else f"{row.n:,}"
    target = "" if row.target is None else row.target.text
    case = row.case if not row.note else f"{row.case} ({row.note})"
    cells = (row.scenario, case, n, row.unit, value, base, ratio, target, row.status)
    return "| " + " | ".join(cells) + " |"


def _markdown(rows: list[Row], machine: dict[str, Any], mode: str, seconds: float) -> str:
    lines = [
        f"# asyncflow benchmarks ({mode} mode)",
        "",
        f"- date: {machine['date']}, {seconds:.0f} s wall",
        f"- CPU: {machine['cpu_model']}, {machine['cores']} cores "
        f"(load average at start: {machine['load_average_at_start']})",
        f"- Python: {machine['python']} on {machine['platform']}",
        f"- asyncflow {machine['asyncflow']} (commit {machine['git_commit']}); uvloop "
        f"installed: {machine['uvloop_installed']}, engine loop: "
        f"{'uvloop' if machine['uvloop_engine_loop'] else 'asyncio'}, caller loop: "
        f"{'uvloop' if machine['uvloop_caller_loop'] else 'asyncio'}",
        "",
        "Values are medians with [min, max] over the repeats; the ratio column is the median "
        "of the paired asyncflow/baseline ratios.",
        "",
        HEADER,
        *(format_row(r) for r in rows),
        "",
    ]
    return "\n".join(lines)


def write_results(
    out: Path, rows: list[Row], machine: dict[str, Any], mode: str, seconds: float
) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "mode": mode,
        "wall_seconds": round(seconds, 1),
        "machine": machine,
        "argv": sys.argv[1:],
        "rows": [r.to_json() for r in rows],
    }
    json_path, md_path = out / "latest.json", out / "latest.md"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(json_path)
    md_path.write_text(_markdown(rows, machine, mode, seconds), encoding="utf-8")
    return json_path, md_path
