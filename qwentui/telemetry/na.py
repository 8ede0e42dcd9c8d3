"""`NA`: "not available" as a value (nvitop's NaType), so a missing reading never raises.

NA is falsy, prints as "n/a", ignores format specs, absorbs arithmetic (NA + 1 is NA) and
compares False with everything but itself, so `running + queued > 0` is simply False when
the engine exports no metrics. `plain()` turns it into None for JSON.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar, Union

T = TypeVar("T")


class NaType:
    __slots__ = ()
    _instance: "NaType | None" = None

    def __new__(cls) -> "NaType":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NA"

    def __str__(self) -> str:
        return "n/a"

    def __format__(self, spec: str) -> str:
        return "n/a"

    def __bool__(self) -> bool:
        return False

    def __float__(self) -> float:
        return math.nan

    def __reduce__(self) -> str:
        return "NA"

    def __copy__(self) -> "NaType":
        return self

    def __deepcopy__(self, memo: Any) -> "NaType":
        return self

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return hash("qwentui.NA")

    def _absorb(self, *_: Any) -> "NaType":
        return self

    def _false(self, _: Any) -> bool:
        return False

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _absorb
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __neg__ = __abs__ = _absorb
    __lt__ = __le__ = __gt__ = __ge__ = _false


NA = NaType()

Maybe = Union[T, NaType]


def is_na(value: object) -> bool:
    return value is NA


def plain(value: Any) -> Any:
    """NA → None, recursively through tuples, lists and dicts (for JSON)."""
    if value is NA:
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
