"""Themes from TOML files: the shipped `themes/` dir, then `<config dir>/themes/` (user files win).

A theme file holds Textual `Theme` fields (`name`, `dark`, `primary`, ... and a
`[variables]` table). A broken file is skipped with a warning, never a crash.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from textual.app import App
from textual.theme import Theme

from qwentui import paths

DEFAULT_THEME = "qwentui-dark"
_FIELDS = {f.name for f in fields(Theme)}


def theme_dirs() -> list[Path]:
    """Where themes are looked up, lowest priority first."""
    return [paths.data_dir("themes"), paths.config_dir() / "themes"]


def parse_theme(path: Path) -> Theme:
    """One theme file → Theme; ValueError naming the file when it is unusable."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    data.setdefault("name", path.stem)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}")
    if "primary" not in data:
        raise ValueError(f"{path}: 'primary' colour is required")
    try:
        theme = Theme(**data)
        theme.to_color_system().generate()  # bad colours fail here, not when selected
    except Exception as exc:  # noqa: BLE001 - Color parse errors come in several types
        raise ValueError(f"{path}: {exc}") from None
    return theme


def load_themes(dirs: list[Path] | None = None) -> tuple[dict[str, Theme], list[str]]:
    """All themes found in `dirs` (later dirs override earlier ones) and warnings for bad files."""
    themes: dict[str, Theme] = {}
    warnings: list[str] = []
    for folder in theme_dirs() if dirs is None else dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = parse_theme(path)
            except ValueError as exc:
                warnings.append(f"theme skipped: {exc}")
                continue
            themes[theme.name] = theme
    return themes, warnings


def install_themes(app: App, wanted: str, dirs: list[Path] | None = None) -> list[str]:
    """Register our themes on `app` and select `wanted` (fallback: qwentui-dark); returns warnings."""
    themes, warnings = load_themes(dirs)
    for theme in themes.values():
        app.register_theme(theme)
    name = wanted or DEFAULT_THEME
    if name not in app.available_themes:
        fallback = DEFAULT_THEME if DEFAULT_THEME in app.available_themes else "textual-dark"
        warnings.append(f"unknown theme {name!r}; using {fallback}. "
                        f"Themes: {', '.join(sorted(themes)) or 'none found'}")
        name = fallback
    app.theme = name
    return warnings
