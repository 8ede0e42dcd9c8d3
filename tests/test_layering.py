"""Headless modules never pull in the UI (harlequin's import-hygiene test)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import qwentui

UI_PREFIXES = ("qwentui.ui", "qwentui.commands.console")


def headless_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(qwentui.__path__, "qwentui."):
        if info.name.startswith(UI_PREFIXES) or info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def test_there_are_headless_modules():
    assert "qwentui.config" in headless_modules()


def test_headless_modules_do_not_import_textual_or_rich():
    # httpx's optional CLI (`httpx._main`) pulls in rich when rich is installed: only rich
    # modules beyond what `import httpx` loads count against us.
    code = (
        "import importlib, sys\n"
        "import httpx\n"
        "before = set(sys.modules)\n"
        f"for name in {headless_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "new = set(sys.modules) - before\n"
        "bad = [m for m in new if m in ('textual', 'rich') or m.startswith(('textual.', 'rich.', 'qwentui.ui'))]\n"
        "print(sorted(bad))\n"
    )
    assert _printed(code) == "[]"


def test_the_console_imports_nothing_its_first_frame_does_not_need():
    """First paint: httpx, prometheus_client, rich.markdown and the simulator's server stack
    are imported on first use, not while the console builds its first frame."""
    code = (
        "import sys\n"
        "import qwentui.cli, qwentui.commands.console, qwentui.engine, qwentui.runtime.core, qwentui.ui.app\n"
        "late = ('httpx', 'prometheus_client', 'rich.markdown', 'markdown_it', 'starlette', 'uvicorn')\n"
        "print(sorted(m for m in late if m in sys.modules))\n"
    )
    assert _printed(code) == "[]"


def _printed(code: str) -> str:
    """What `code` prints in a fresh interpreter (so sys.modules starts empty)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()
