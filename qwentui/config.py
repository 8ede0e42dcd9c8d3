"""Typed configuration: one frozen dataclass per TOML table, strict loading.

Sources, lowest priority first: defaults → TOML file → `QWENTUI_<SECTION>_<KEY>`
environment variables → CLI flags (`Override`s passed to `load`). All three go through
the same coercion and validation; an error names where the value came from: the file
and line (`config.toml:12: idle.timeout`), the variable (`QWENTUI_IDLE_TIMEOUT`) or the
flag (`--idle-timeout`). Numbers must be finite (no nan/inf).

`idle.warn_before`, when nobody sets it, is the smaller of 2m and a third of
`idle.timeout`; a value that is set and not shorter than the timeout is an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from qwentui.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_PREFIX = "QWENTUI_"
# QWENTUI_* variables that are not config overrides.
ENV_RESERVED = {"QWENTUI_CONFIG", "QWENTUI_DEBUG"}

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Longer than any box runs; keeps deadlines and timers far from float/OS limits.
MAX_DURATION = 100 * 365 * 86400.0
WARN_BEFORE_MAX = 120.0  # warn_before when not set: min(2m, timeout / 3)


def parse_duration(value: Any, key: str = "duration") -> float:
    """Seconds from "90s", "30m", "1h", "1h30m", "250ms" or a bare number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a duration like '30m', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
                raise ConfigError(
                    f"{key} must be a duration like '90s', '30m', '1h' or '1h30m', got {value!r}"
                )
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ConfigError(f"{key} must be a duration like '30m', got {value!r}")
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ConfigError(f"{key} must be a finite duration (at most 100 years), got {value!r}")
    if seconds <= 0:
        raise ConfigError(f"{key} must be greater than zero, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest duration string that parses back to `seconds`."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out


def parse_duration_or_zero(value: Any, key: str = "duration") -> float:
    """Like `parse_duration`, but 0 ("0", "0s", 0) is allowed; negative values are refused."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0 \
            or isinstance(value, str) and value.strip().startswith("-"):
        raise ConfigError(f"{key} must not be negative, got {value!r}")
    if not isinstance(value, bool) and isinstance(value, (int, float, str)) \
            and re.fullmatch(r"0+(\.0*)?(ms|s|m|h|d)?", str(value).strip().lower()):
        return 0.0
    return parse_duration(value, key)


def duration(default: str, doc: str) -> Any:
    """A dataclass field holding seconds, written as a duration string in TOML."""
    return field(default=parse_duration(default), metadata={"doc": doc, "duration": True})


def opt(default: Any, doc: str, **meta: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc, **meta})
    return field(default=default, metadata={"doc": doc, **meta})


@dataclass(frozen=True)
class EngineConfig:
    kind: str = opt("sglang", "Engine to launch: 'sglang' (real) or 'sim' (simulator, labelled SIMULATED).", choices=("sglang", "sim"))
    python: str = opt("", "Python interpreter that has SGLang installed; empty = the one running qwentui.")
    model: str = opt("Qwen/Qwen3-1.7B", "Model path or Hugging Face repo id passed as --model-path.")
    served_model_name: str = opt("", "Name clients use as `model`; empty = SGLang's default (the model path).")
    preset: str = opt("auto", "Launch preset from engine/presets/ ('auto' picks by GPU name).")
    host: str = opt("127.0.0.1", "Address the engine binds; anything but loopback requires an API key.")
    port: int = opt(30000, "TCP port of the engine's HTTP API.")
    api_key: str = opt("", "API key clients must send; generated and stored when host is not loopback.", secret=True)
    extra_args: list = opt([], "Extra SGLang flags appended to the preset's, e.g. ['--log-level', 'info'].")
    overrides: dict = opt({}, "Preset flag overrides, e.g. {'--context-length' = '8192'}.")
    startup_timeout: float = duration("10m", "Give up on start-up after this long.")
    # SGLang reacts to SIGTERM on a 5 s tick and then waits up to 15 s for its scheduler to
    # free GPU memory (srt/managers/tokenizer_manager.py); a SIGKILL before that leaks it.
    stop_grace: float = duration("30s", "Wait this long after SIGTERM before SIGKILL.")
    autostart: bool = opt(True, "Start the engine when the console opens.")
    gpus: Any = opt(1, "GPUs for one SGLang server: 1, N (--dp-size N: one replica per GPU) or \"all\".", gpus=True)


@dataclass(frozen=True)
class ChatConfig:
    thinking: bool = opt(True, "Qwen3 thinking mode on for new messages.")
    system_prompt: str = opt("", "System prompt prepended to each conversation.")
    max_tokens: int = opt(4096, "max_tokens sent with each chat request.")


DEFAULT_PRICES = {"T4": 1.8, "L4": 2.5, "A10G": 3.0, "A100": 12.0}


@dataclass(frozen=True)
class CostConfig:
    currency: str = opt("CNY", "Currency label shown with prices (never converted).")
    price_per_hour: float = opt(0.0, "Price of this box per hour; 0 = look up the GPU class in [cost.prices].")
    billing: str = opt("instance", "'instance' bills since boot; 'engine' only while the engine runs.", choices=("instance", "engine"))
    budget_session: float = opt(0.0, "Stop the engine when one session costs this much; 0 = no cap.")
    budget_month: float = opt(0.0, "Stop the engine when this month's ledger total reaches this; 0 = no cap.")
    heartbeat: float = duration("30s", "Ledger heartbeat: at most this much is lost on kill -9.")
    granularity: str = opt("second", "How the provider bills each up-period: rounded up to a whole "
                           "'second', 'minute' or 'hour' (counted from the period's start).",
                           choices=("second", "minute", "hour"))
    minimum: float = opt(0.0, "Least billed per up-period, e.g. '1m'; '0s' = no minimum.",
                         duration=True, zero_ok=True)
    prices: dict = opt(dict(DEFAULT_PRICES), "Price per hour by GPU class.")


@dataclass(frozen=True)
class IdleConfig:
    enabled: bool = opt(True, "Watch for idleness and act on it.")
    timeout: float = duration("30m", "Act after this long without any activity.")
    warn_before: float = field(default=WARN_BEFORE_MAX, metadata={
        "doc": "Warn (bell, countdown, snooze) this long before acting; not set = the smaller of 2m "
               "and a third of idle.timeout.", "duration": True, "derived": True})
    action: str = opt("stop-engine", "'stop-engine' or 'poweroff' (stops the engine first).", choices=("stop-engine", "poweroff"))
    poweroff_command: list = opt(["systemctl", "poweroff"], "argv run to power off; $VARS are expanded.")
    dry_run: bool = opt(False, "Print the poweroff command instead of running it.")
    count_consoles: bool = opt(False, "An attached console counts as activity (like an open SSH session).")
    stop_at: str = opt("timeout", "'timeout' stops when the timeout runs out; 'billing-boundary' (minute "
                       "or hour billing) keeps the engine up until just before the paid time ends.",
                       choices=("timeout", "billing-boundary"))
    boundary_margin: float = opt(0.0, "With stop_at = 'billing-boundary': stop this long before the "
                                 "boundary; '0s' = engine.stop_grace + 30s.", duration=True, zero_ok=True)


@dataclass(frozen=True)
class TelemetryConfig:
    interval: float = duration("1s", "How often GPU, engine and host are sampled.")


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = opt(False, "Serve repeated prompts from the cache.")
    ttl: float = duration("1h", "How long a cached answer stays valid.")
    backend: str = opt("sqlite", "'sqlite' (state dir) or 'redis'.", choices=("sqlite", "redis"))
    redis_url: str = opt("redis://127.0.0.1:6379/0", "Redis URL when backend = 'redis'.", secret_url=True)
    max_entries: int = opt(10000, "Size cap of the SQLite cache (oldest entries go first).")
    policy: str = opt("all", "Which requests are cached: 'all' (you opted in) or 'deterministic' "
                      "(temperature 0 or a fixed seed only).", choices=("all", "deterministic"))


@dataclass(frozen=True)
class UiConfig:
    theme: str = opt("qwentui-dark", "Theme name from themes/ or the config dir's themes/.")
    keymap: dict = opt({}, "Rebind keys by binding id, e.g. {'new-chat' = 'ctrl+n'}.")


@dataclass(frozen=True)
class FleetConfig:
    workers: list = opt([], "Engine URLs served behind SGLang's model gateway `smg`, e.g. ['http://box-a:30000'].")
    host: str = opt("127.0.0.1", "Address the gateway binds; anything but loopback requires fleet.api_key.")
    port: int = opt(30080, "TCP port of the gateway's OpenAI-compatible API.")
    metrics_port: int = opt(29000, "Port of the gateway's Prometheus /metrics, always bound to 127.0.0.1.")
    # round_robin: with smg 1.13's defaults, cache_aware/power_of_two/least_load sent ~60% of a
    # 300-prompt batch to one of three equal workers here (its balance threshold is 64 requests).
    policy: str = opt("round_robin", "smg routing policy; 'cache_aware' suits long shared prompts.",
                      choices=("round_robin", "cache_aware", "power_of_two", "least_load", "random"))
    api_key: str = opt("", "Key the workers want (smg sends it to them and requires it from clients).", secret=True)
    prices: dict = opt({}, "Price per hour of each worker's box by URL, e.g. {'http://box-a:30000' = 1.8}; "
                       "the ledger records one session per worker at this price.")
    health_interval: float = duration("5s", "How often smg probes each worker's /ready; 2 misses mark it down.")
    startup_timeout: float = duration("2m", "Give up when the gateway has not registered every worker by then.")
    stop_grace: float = duration("10s", "Wait this long after SIGTERM before SIGKILL (smg drains for ~5s).")


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    idle: IdleConfig = field(default_factory=IdleConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    source: str = field(default="defaults", compare=False)


SECTIONS: dict[str, type] = {
    "engine": EngineConfig,
    "chat": ChatConfig,
    "cost": CostConfig,
    "idle": IdleConfig,
    "telemetry": TelemetryConfig,
    "cache": CacheConfig,
    "ui": UiConfig,
    "fleet": FleetConfig,
}

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a table"}


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Where:
    """Names the place a value came from, for error messages."""

    def __init__(self, origin: str, text: str | None = None) -> None:
        self.origin = origin
        self.lines = text.splitlines() if text else []
        self.set_by: dict[tuple[str, str], str] = {}  # (section, key) → the override's origin

    def line_of(self, section: str, key: str | None) -> int | None:
        current = None
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            header = re.match(r"\[\s*([\w.-]+)\s*\]", stripped)
            if header:
                current = header.group(1)
                if key is None and current == section:
                    return number
                continue
            if key and current == section and re.match(rf'"?{re.escape(key)}"?\s*=', stripped):
                return number
        return None

    def __call__(self, section: str, key: str | None = None) -> str:
        if key is not None and (section, key) in self.set_by:
            return self.set_by[(section, key)]
        line = self.line_of(section, key)
        dotted = f"{section}.{_toml_key(key)}" if key else section
        at = f"{self.origin}:{line}" if line else self.origin
        return f"{at}: {dotted}"


def _coerce(value: Any, f: dataclasses.Field, where: str) -> Any:
    """Check one value against its field's type; return the stored form."""
    if f.metadata.get("duration"):
        parse = parse_duration_or_zero if f.metadata.get("zero_ok") else parse_duration
        try:
            return parse(value, key=where)
        except ConfigError as exc:
            raise ConfigError(str(exc)) from None
    if f.metadata.get("gpus"):
        return gpus_setting(value, where)
    kind = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float,
                                                    "bool": bool, "list": list, "dict": dict}[f.type]
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{where} must be {_TYPE_NAMES[kind]}, got {value!r}")
    odd = _odd_value(value)
    if odd:
        raise ConfigError(f"{where} must be {odd}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _odd_value(value: Any) -> str | None:
    """Why a value is no setting's: nan/inf or a date anywhere in it (also inside lists and tables)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number (no nan or inf)"
    if isinstance(value, (list, dict)):
        items = value.values() if isinstance(value, dict) else value
        return next((odd for odd in map(_odd_value, items) if odd), None)
    if not isinstance(value, (str, int, float, bool)):
        return "made of strings, numbers and true/false (no dates or times)"
    return None


def gpus_setting(value: Any, where: str = "engine.gpus") -> Any:
    """engine.gpus: a whole number >= 1 or "all" (a digit string from the environment counts)."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a whole number of GPUs (1, 2, ...) or \"all\", got {value!r}")
    return value


def _build_section(cls: type, table: Mapping[str, Any], where: _Where, section: str, base: Any) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where(section)} must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{where(section, key)} is not a known key{_suggest(key, list(fields))}")
        values[key] = _coerce(value, fields[key], where(section, key))
    return dataclasses.replace(base, **values)


def _validate(cfg: Config, where: _Where) -> None:
    e, c, i = cfg.engine, cfg.cost, cfg.idle
    if not 1 <= e.port <= 65535:
        raise ConfigError(f"{where('engine', 'port')} must be an integer 1-65535, got {e.port!r}")
    if not _is_host(e.host):
        raise ConfigError(f"{where('engine', 'host')} must be an IP address or 'localhost', got {e.host!r}")
    if not all(isinstance(a, str) for a in e.extra_args):
        raise ConfigError(f"{where('engine', 'extra_args')} must be a list of strings")
    if not i.poweroff_command or not all(isinstance(a, str) and a for a in i.poweroff_command):
        raise ConfigError(f"{where('idle', 'poweroff_command')} must be a non-empty list of strings")
    if i.warn_before >= i.timeout:
        by = where.set_by.get(("idle", "timeout"))
        raise ConfigError(f"{where('idle', 'warn_before')} ({format_duration(i.warn_before)}) must be "
                          f"shorter than idle.timeout ({format_duration(i.timeout)}"
                          f"{f', from {by}' if by else ''})")
    for key in ("price_per_hour", "budget_session", "budget_month"):
        if getattr(c, key) < 0:
            raise ConfigError(f"{where('cost', key)} must not be negative, got {getattr(c, key)!r}")
    for gpu, price in c.prices.items():
        if isinstance(price, bool) or not isinstance(price, (int, float)) or price <= 0:
            raise ConfigError(f"{where('cost.prices', gpu)} must be a price greater than zero, got {price!r}")
    if cfg.chat.max_tokens <= 0:
        raise ConfigError(f"{where('chat', 'max_tokens')} must be greater than zero")
    if cfg.cache.max_entries <= 0:
        raise ConfigError(f"{where('cache', 'max_entries')} must be greater than zero")
    _validate_fleet(cfg.fleet, where)


def _validate_fleet(f: FleetConfig, where: _Where) -> None:
    for key in ("port", "metrics_port"):
        if not 1 <= getattr(f, key) <= 65535:
            raise ConfigError(f"{where('fleet', key)} must be an integer 1-65535, got {getattr(f, key)!r}")
    if f.port == f.metrics_port:
        by = where.set_by.get(("fleet", "port"))
        raise ConfigError(f"{where('fleet', 'metrics_port')} must differ from fleet.port "
                          f"({f.port}{f', from {by}' if by else ''})")
    if not _is_host(f.host):
        raise ConfigError(f"{where('fleet', 'host')} must be an IP address or 'localhost', got {f.host!r}")
    if not all(isinstance(w, str) and w.strip() for w in f.workers):
        raise ConfigError(f"{where('fleet', 'workers')} must be a list of URLs like 'http://box-a:30000'")
    for url, price in f.prices.items():
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 < price < float("inf"):
            raise ConfigError(f"{where('fleet.prices', url)} must be a price greater than zero, got {price!r}")


def _is_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    return host == "localhost" or (_is_host(host) and ipaddress.ip_address(host).is_loopback)


@dataclass(frozen=True)
class Override:
    """One setting from outside the file: an environment variable or a CLI flag."""

    section: str
    key: str
    value: Any  # as typed (text) when `text`, else already the stored type (a switch's True)
    origin: str  # names it in errors: "--idle-timeout", "QWENTUI_IDLE_TIMEOUT"
    text: bool = True


def field_of(section: str, key: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)


def from_mapping(data: Mapping[str, Any], origin: str = "<config>", text: str | None = None,
                 overrides: Sequence[Override] = ()) -> Config:
    """The file's tables, then `overrides` in order; coerced, defaulted and validated."""
    where = _Where(origin, text)
    cfg = Config(source=origin)
    explicit: set[tuple[str, str]] = set()
    for section, table in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{where(section)} is not a known section{_suggest(section, list(SECTIONS))}")
        current = getattr(cfg, section)
        cfg = dataclasses.replace(cfg, **{section: _build_section(SECTIONS[section], table, where, section, current)})
        explicit |= {(section, key) for key in table}
    for o in overrides:
        f = field_of(o.section, o.key)
        value = _coerce(_text_value(o.value, f) if o.text else o.value, f, o.origin)
        current = getattr(cfg, o.section)
        cfg = dataclasses.replace(cfg, **{o.section: dataclasses.replace(current, **{o.key: value})})
        where.set_by[(o.section, o.key)] = o.origin
        explicit.add((o.section, o.key))
    if ("idle", "warn_before") not in explicit:
        warn = min(WARN_BEFORE_MAX, cfg.idle.timeout / 3)
        cfg = dataclasses.replace(cfg, idle=dataclasses.replace(cfg.idle, warn_before=warn))
    _validate(cfg, where)
    _check_no_nul(cfg, where)
    return cfg


def _check_no_nul(cfg: Config, where: _Where) -> None:
    """A NUL byte cannot go into argv, a path or an environment variable."""
    def has_nul(value: Any) -> bool:
        if isinstance(value, str):
            return "\x00" in value
        if isinstance(value, (list, tuple)):
            return any(has_nul(v) for v in value)
        if isinstance(value, Mapping):
            return any(has_nul(k) or has_nul(v) for k, v in value.items())
        return False

    for section in SECTIONS:
        for f in dataclasses.fields(getattr(cfg, section)):
            if has_nul(getattr(getattr(cfg, section), f.name)):
                raise ConfigError(f"{where(section, f.name)} must not contain a NUL character (\\u0000)")


def _text_value(raw: Any, f: dataclasses.Field) -> Any:
    """Typed text (env var, flag): a TOML value when it is one ('8080', 'true', '["a"]'),
    else the text itself; string fields take the text as it is."""
    if not isinstance(raw, str) or (f.type in ("str", str) and not f.metadata.get("duration")):
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> list[Override]:
    """`QWENTUI_ENGINE_PORT=30001` → Override("engine", "port", "30001", ...); unknown names are errors."""
    out: list[Override] = []
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_RESERVED:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(f"environment: {name} is not a known setting{_suggest(rest, list(SECTIONS))}")
        key = rest[len(section) + 1:]
        names = [f.name for f in dataclasses.fields(SECTIONS[section])]
        if key not in names:
            raise ConfigError(f"environment: {name} is not a known setting"
                              f"{_suggest(key, names)}")
        out.append(Override(section, key, raw, f"environment: {name}"))
    return out


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        pos = f":{match.group(1)}:{match.group(2)}" if match else ""
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{path}{pos}: TOML syntax error: {reason}") from None


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
         flags: Sequence[Override] = ()) -> Config:
    """Load the effective config: file, then environment, then `flags`.
    `path` given and missing is an error; the default path may be absent."""
    from qwentui import paths

    environ = os.environ if environ is None else environ
    explicit = path or environ.get("QWENTUI_CONFIG")
    file = Path(explicit).expanduser() if explicit else paths.config_file()
    data: dict[str, Any] = {}
    text = None
    if explicit or file.exists():
        data, text = _read_toml(file)
    origin = str(file) if text is not None else "defaults"
    return from_mapping(data, origin=origin, text=text, overrides=[*env_overrides(environ), *flags])


def mask_secret(value: str) -> str:
    """Show that a secret is set without showing it: 'sk-abc…' → 'sk-a…(32 chars)'."""
    if not value:
        return ""
    return f"{value[:4]}…({len(value)} chars)" if len(value) > 8 else "****"


def mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]+@", r"\1****@", url)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):  # JSON's escapes are TOML's; DEL must be escaped in TOML too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def to_toml(cfg: Config, *, mask: bool = True, comments: bool = False) -> str:
    """Render `cfg` as TOML; secrets masked unless `mask=False`."""
    out: list[str] = []
    for section, cls in SECTIONS.items():
        values = getattr(cfg, section)
        out.append(f"[{section}]")
        for f in dataclasses.fields(cls):
            value = getattr(values, f.name)
            if f.metadata.get("duration"):
                value = format_duration(value)
            elif mask and f.metadata.get("secret") and value:
                value = mask_secret(value)
            elif mask and f.metadata.get("secret_url"):
                value = mask_url(value)
            line = f"{f.name} = {_toml_value(value)}"
            if comments:
                out.append(f"# {f.metadata['doc']}")
                if f.metadata.get("derived"):  # left unset so the rule follows idle.timeout
                    line = f"# {line}"
            out.append(line)
        out.append("")
    return "\n".join(out)


def default_file_text() -> str:
    """The commented file `qwentui config init` writes; it loads back to the defaults."""
    head = ("# qwentui configuration. Every key is shown with its default.\n"
            "# Durations: '90s', '30m', '1h', '1h30m'. Numbers must be finite (no nan/inf).\n"
            "# Overrides, highest first: command-line flags, then QWENTUI_<SECTION>_<KEY> environment\n"
            "# variables, then this file.\n"
            "# idle.warn_before: when not set, the smaller of 2m and a third of idle.timeout;\n"
            "# a value that is set must be shorter than idle.timeout.\n\n")
    return head + to_toml(Config(), mask=False, comments=True)
