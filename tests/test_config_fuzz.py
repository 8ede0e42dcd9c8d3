"""Fuzz: random TOML values of every type (nan/inf included) through the file, the
environment and the flags never end in anything but exit 0, or one line + exit 2.

Runs the real CLI in-process (`cli.main`) so each example costs milliseconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import math
import os
from pathlib import Path
from unittest import mock

import pytest

try:
    import tomllib
except ImportError:  # 3.10
    import tomli as tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwentui import cli
from qwentui.config import SECTIONS

KEYS = [(s, f.name) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
SERVE_FLAGS = ["--stop-grace", "--startup-timeout", "--idle-timeout", "--idle-action", "--port", "--engine"]
FLEET_FLAGS = ["--port", "--metrics-port", "--policy"]

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 0.0, -0.0, 1e308, 5e-324]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["30m", "1h30m", "0s", "inf", "nan", "-1m", "250ms", "1e400", "127.0.0.1", "sim",
                     "stop-engine", "poweroff"]),
    st.datetimes(), st.dates(), st.times(),
)
# Table keys: mostly plain, sometimes what breaks one-line messages and TOML output.
keys = st.one_of(st.sampled_from(["T4", "A100", "--context-length", "new-chat"]),
                 st.text(st.sampled_from('aT4\n\r"\\ .-_\x7f\x00é'), max_size=5))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=6)


def toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + "}"


def env_text(value) -> str:
    return value if isinstance(value, str) else toml(value)


def run(argv: list[str], env: dict[str, str], shown: list | None = None) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    if shown is not None:
        shown.append(out.getvalue())
    return code, err.getvalue()


def assert_show_is_toml(code: int, shown: list[str]) -> None:
    """`config show` prints TOML that reads back, whatever the values."""
    if code == 0:
        tomllib.loads(shown[0])


def assert_clean(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("qwentui"), err
    else:
        assert err == "", err


class _NoGuard:
    """Stands in for the guard: the flags have been applied and validated by then."""

    def __init__(self, cfg, **_):
        self.cfg = cfg

    async def run(self) -> int:
        return 0


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
entries = st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=4)


@FUZZ
@given(entries=entries)
def test_file_values(tmp_path, entries):
    file: Path = tmp_path / "fuzz.toml"
    tables: dict[str, list[str]] = {}
    for (section, key), value in entries:
        tables.setdefault(section, []).append(f"{key} = {toml(value)}")
    file.write_text("".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in tables.items()), encoding="utf-8")
    shown: list[str] = []
    code, err = run(["--config", str(file), "config", "show"], {}, shown)
    assert_clean(code, err)
    assert_show_is_toml(code, shown)


@FUZZ
@given(entries=entries)
def test_env_values(entries):
    env = {f"QWENTUI_{s.upper()}_{k.upper()}": env_text(v) for (s, k), v in entries}
    env = {k: v for k, v in env.items() if "\x00" not in v}
    shown: list[str] = []
    code, err = run(["config", "show"], env, shown)
    assert_clean(code, err)
    assert_show_is_toml(code, shown)


@FUZZ
@given(flags=st.lists(st.tuples(st.sampled_from(SERVE_FLAGS), values), max_size=3))
def test_flag_values(flags):
    argv = ["serve", *(f"{flag}={env_text(v)}" for flag, v in flags)]
    with mock.patch("qwentui.runtime.guard.Guard", _NoGuard):
        assert_clean(*run(argv, {}))


@FUZZ
@given(flags=st.lists(st.tuples(st.sampled_from(FLEET_FLAGS), values), max_size=3))
def test_fleet_flag_values(flags):
    argv = ["fleet", "--worker", "http://127.0.0.1:9", *(f"{flag}={env_text(v)}" for flag, v in flags)]
    # Past the flags the gateway would start: stop there with a clean exit.
    with mock.patch("qwentui.engine.gateway.require_smg", side_effect=SystemExit(0)):
        assert_clean(*run(argv, {}))


@pytest.mark.parametrize("argv, env, message", [
    (["config", "show"], {"QWENTUI_IDLE_TIMEOUT": "inf"}, "QWENTUI_IDLE_TIMEOUT must be a finite duration"),
    (["config", "show"], {"QWENTUI_ENGINE_STOP_GRACE": "inf"}, "QWENTUI_ENGINE_STOP_GRACE must be a finite"),
    (["config", "show"], {"QWENTUI_COST_PRICE_PER_HOUR": "nan"}, "QWENTUI_COST_PRICE_PER_HOUR must be a finite"),
    (["config", "show"], {"QWENTUI_COST_PRICES": "{T4 = inf}"}, "QWENTUI_COST_PRICES must be a finite"),
    (["serve", "--idle-timeout", "inf"], {}, "--idle-timeout must be a finite duration"),
    (["serve", "--stop-grace", "nan"], {}, "--stop-grace must be a finite duration"),
])
def test_non_finite_numbers_are_one_line_and_exit_2(argv, env, message):
    with mock.patch("qwentui.runtime.guard.Guard", _NoGuard):
        code, err = run(argv, env)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("body, message", [
    ("[cost]\nprice_per_hour = inf\n", "fuzz.toml:2: cost.price_per_hour must be a finite number"),
    ("[idle]\ntimeout = inf\n", "fuzz.toml:2: idle.timeout must be a finite duration"),
    ("[engine]\nstop_grace = nan\n", "fuzz.toml:2: engine.stop_grace must be a finite duration"),
    ("[engine]\noverrides = {'--context-length' = inf}\n", "fuzz.toml:2: engine.overrides must be a finite"),
    ("[ui]\nkeymap = {quit = 2000-01-01}\n", "fuzz.toml:2: ui.keymap must be made of strings, numbers"),
])
def test_non_finite_in_the_file_names_the_line(tmp_path, body, message):
    file = tmp_path / "fuzz.toml"
    file.write_text(body)
    code, err = run(["--config", str(file), "config", "show"], {})
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
