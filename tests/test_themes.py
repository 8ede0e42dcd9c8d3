"""Themes: shipped + user TOML files, bad files skipped, unknown name falls back; NO_COLOR, TERM=dumb."""

from __future__ import annotations

import dataclasses

from textual.app import App

from qwentui import paths
from qwentui.config import Config
from qwentui.ui.app import make_app
from qwentui.ui.themes import DEFAULT_THEME, install_themes, load_themes, parse_theme
from tests.test_ui_chat import READY


def _cfg(theme: str) -> Config:
    return dataclasses.replace(Config(), ui=dataclasses.replace(Config().ui, theme=theme))


def test_shipped_themes_load_without_warnings():
    themes, warnings = load_themes()
    assert {"qwentui-dark", "qwentui-light", "qwentui-high-contrast"} <= set(themes)
    assert warnings == []
    assert themes["qwentui-light"].dark is False
    assert themes["qwentui-dark"].variables["footer-key-foreground"] == "#F2B84B"


def test_user_dir_adds_and_overrides_and_bad_files_are_skipped(tmp_path):
    user = paths.config_dir() / "themes"
    user.mkdir(parents=True)
    (user / "mine.toml").write_text('name = "mine"\nprimary = "#112233"\ndark = false\n')
    (user / "qwentui-dark.toml").write_text('name = "qwentui-dark"\nprimary = "#FF0000"\n')
    (user / "broken.toml").write_text('name = "broken"\nprimary = ')
    (user / "badcolour.toml").write_text('name = "badcolour"\nprimary = "not-a-colour"\n')
    (user / "typo.toml").write_text('name = "typo"\nprimary = "#000000"\nprimray = "#111111"\n')
    themes, warnings = load_themes()
    assert themes["mine"].primary == "#112233"
    assert themes["qwentui-dark"].primary == "#FF0000"  # the user's file wins
    assert not {"broken", "badcolour", "typo"} & set(themes)
    assert len(warnings) == 3 and all(w.startswith("theme skipped:") for w in warnings)
    assert any("primray" in w for w in warnings)


def test_parse_theme_names_file_from_stem(tmp_path):
    path = tmp_path / "plain.toml"
    path.write_text('primary = "#445566"\n')
    assert parse_theme(path).name == "plain"


async def test_install_unknown_theme_warns_and_falls_back():
    app = App()
    async with app.run_test():
        warnings = install_themes(app, "no-such-theme")
        assert app.theme == DEFAULT_THEME
        assert "unknown theme 'no-such-theme'" in warnings[0] and "qwentui-light" in warnings[0]


async def test_app_applies_configured_theme_and_toasts_unknown_one():
    app = make_app(_cfg("qwentui-light"), status=READY)
    async with app.run_test(size=(80, 24)):
        assert app.theme == "qwentui-light"
        assert not app.current_theme.dark
    app2 = make_app(_cfg("solarized-nope"), status=READY)
    seen = []
    original = app2.notify
    app2.notify = lambda message, **kw: (seen.append((message, kw)), original(message, **kw))[1]
    async with app2.run_test(size=(80, 24)):
        assert app2.theme == DEFAULT_THEME
    assert any("unknown theme 'solarized-nope'" in m and kw.get("severity") == "warning" for m, kw in seen)


async def test_no_color_is_respected(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(Config(), status=READY)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.no_color  # Textual then renders monochrome


async def test_term_dumb_does_not_crash(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    app = make_app(Config(), status=READY)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await pilot.press("escape")
        assert app.screen is app.screen_stack[0]
