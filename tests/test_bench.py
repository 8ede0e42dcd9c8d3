"""The bench harness runs and writes its JSON (never asserts timing targets: shared box)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
_spec = importlib.util.spec_from_file_location("bench_common", BENCH / "common.py")
bench_common = sys.modules["bench_common"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_common)
Figure = bench_common.Figure

KEYS = {"name", "value", "unit", "target", "ok"}


def run_bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "run.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_help_figures_to_json(tmp_path):
    out = tmp_path / "out.json"
    done = run_bench("--quick", "--only", "help", "--json", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows] == ["help.wall", "help.python_baseline"]
    for row in rows:
        assert set(row) == KEYS
        assert isinstance(row["value"], float) and row["value"] > 0
        assert isinstance(row["ok"], bool) and row["unit"] == "s"
    assert rows[0]["target"] == 0.3 and rows[1]["target"] is None and rows[1]["ok"] is True
    lines = [ln for ln in done.stdout.splitlines() if not ln.startswith("#")]
    assert len(lines) == 2 and lines[0].startswith("help.wall") and ("ok" in lines[0] or "MISS" in lines[0])
    assert "python -c pass" in lines[1]


def test_unknown_group_is_one_line_exit_2(tmp_path):
    done = run_bench("--only", "help,nosuch", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown figure group 'nosuch'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("value, op, target, ok", [
    (1.05, "<=", 1.10, True), (1.2, "<=", 1.10, False), (3.5, ">=", 3.0, True), (2.0, ">=", 3.0, False),
    (5.0, "", None, True), (float("nan"), "<=", 1.0, False),
])
def test_figure_verdict_and_json(value, op, target, ok):
    fig = Figure("x", value, "s", target, op)
    assert fig.ok is ok
    row = fig.as_json()
    assert set(row) == KEYS and row["ok"] is ok
    json.dumps(row, allow_nan=False)  # NaN becomes null: the file stays valid JSON
    assert ("MISS" in fig.line()) is (not ok)
