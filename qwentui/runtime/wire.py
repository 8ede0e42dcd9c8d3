"""Frozen snapshots to JSON and back, for the guard's control API.

`encode` turns a dataclass tree (RuntimeSnapshot, EngineStatus, CostSnapshot, telemetry
Snapshot, ...) into plain JSON values; `decode(cls, data)` rebuilds the same classes from
their type hints, so the console's widgets get the objects they already know. NA becomes
None on the wire and NA again on the way back; Decimal travels as a string.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Any

from qwentui.telemetry.na import NA, NaType


def encode(value: Any) -> Any:
    if value is NA or (isinstance(value, float) and math.isnan(value)):
        return None  # JSON has no NaN; NA and "unknown" read back the same
    if isinstance(value, float) and math.isinf(value):
        return str(value)  # "inf": a histogram's last bucket
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    module = sys.modules[cls.__module__]
    return typing.get_type_hints(cls, vars(module))


def decode(hint: Any, data: Any) -> Any:
    """Rebuild a value of type `hint` from `encode`'s output (unknown keys are ignored)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if data is None:
            return NA if NaType in options else None
        for option in options:
            if option not in (NaType, type(None)):
                return decode(option, data)
        return data
    if data is None or hint is Any:
        return data
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        inner = args[0] if len(args) == 1 or (len(args) == 2 and typing.get_args(hint)[1] is Ellipsis) else None
        if inner is not None and (len(args) == 1):
            items = [decode(inner, v) for v in data]
        elif args:
            items = [decode(a, v) for a, v in zip(args, data)]
        else:
            items = list(data)
        return tuple(items) if origin is tuple else items
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint):
            return _decode_dataclass(hint, data)
        if issubclass(hint, Enum):
            return hint(data)
        if hint is Decimal:
            return Decimal(data)
        if hint is float and isinstance(data, (int, str)):
            return float(data)
    return data


def _decode_dataclass(cls: type, data: dict) -> Any:
    hints = _hints(cls)
    kwargs = {f.name: decode(hints.get(f.name, Any), data[f.name])
              for f in dataclasses.fields(cls) if f.init and f.name in data}
    return cls(**kwargs)


def decode_snapshot(data: dict) -> Any:
    """A RuntimeSnapshot from `/state`'s "runtime" part (its loosely typed parts included)."""
    from qwentui.cache import CacheStats
    from qwentui.engine.status import EngineStatus
    from qwentui.runtime.core import RuntimeSnapshot
    from qwentui.telemetry.sampler import Snapshot

    snap = decode(RuntimeSnapshot, data)
    return dataclasses.replace(
        snap, engine=decode(EngineStatus, data["engine"]),
        telemetry=decode(Snapshot, data["telemetry"]) if data.get("telemetry") else None,
        cache=decode(CacheStats, data["cache"]) if data.get("cache") else None)
