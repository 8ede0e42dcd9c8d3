"""Prices per hour, GPU classes, and how money is written.

Prices come from config: `cost.price_per_hour` (this box, 0 = look up) else
`cost.prices[<gpu class>]`. The currency is a label and is never converted.
Config stores floats; they become `Decimal` through `str()` so 1.8 stays 1.8.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Mapping

from qwentui.errors import UsageError

SYMBOLS = {"CNY": "¥", "RMB": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
CENT = Decimal("0.01")


def to_decimal(value: Any) -> Decimal:
    """A Decimal from a config number without binary float noise (1.8 → Decimal('1.8'))."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def symbol(currency: str) -> str:
    """'CNY' → '¥'; unknown codes are shown as the code plus a space."""
    code = (currency or "").upper()
    return SYMBOLS.get(code, f"{currency} " if currency else "")


def _table(cfg: Any) -> Mapping[str, Any]:
    return getattr(cfg.cost, "prices", {}) or {}


def table_price(cfg: Any, gpu_class: str | None) -> Decimal | None:
    """The configured price of a GPU class (case-insensitive), ignoring the box override."""
    if not gpu_class:
        return None
    wanted = gpu_class.strip().upper()
    for name, price in _table(cfg).items():
        if name.upper() == wanted:
            return to_decimal(price)
    return None


def price_per_hour(cfg: Any, gpu_class: str | None) -> Decimal | None:
    """This box's price per hour, or None when it is unknown (a state, not an error)."""
    override = cfg.cost.price_per_hour
    if override and override > 0:
        return to_decimal(override)
    return table_price(cfg, gpu_class)


def box_price(cfg: Any, gpu_class: str | None, gpus: int = 1) -> Decimal | None:
    """A box with `gpus` GPUs of one class: cost.price_per_hour when set (the box's price),
    else the class's table price × the GPU count (rented boxes bill every GPU they have)."""
    override = cfg.cost.price_per_hour
    if override and override > 0:
        return to_decimal(override)
    each = table_price(cfg, gpu_class)
    return None if each is None else each * max(1, gpus)


def classify(gpu_name: str | None) -> str | None:
    """GPU class of an NVML name ('Tesla T4' → 'T4'), shared with telemetry."""
    if not gpu_name:
        return None
    from qwentui.telemetry.nvml import gpu_class

    return gpu_class(gpu_name)


def known_gpus(cfg: Any) -> list[str]:
    return sorted(_table(cfg), key=str.upper)


def resolve_gpu(cfg: Any, name: str) -> tuple[str, Decimal]:
    """('T4', Decimal('1.8')) for a class or an NVML name; UsageError listing known ones."""
    text = (name or "").strip()
    direct = table_price(cfg, text)
    if direct is not None:
        canonical = next(k for k in _table(cfg) if k.upper() == text.upper())
        return canonical, direct
    cls = classify(text) if text else None
    price = table_price(cfg, cls)
    if cls and price is not None:
        return cls, price
    known = ", ".join(known_gpus(cfg)) or "none"
    raise UsageError(f"unknown GPU {name!r}: known GPUs are {known} "
                     "(add a price under [cost.prices] or pass a price)")


def parse_money(text: str, what: str) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise UsageError(f"{what} must be a number, got {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise UsageError(f"{what} must be a price greater than zero, got {text!r}")
    return value


def _group(value: Decimal) -> str:
    """Thousands separators, trailing zeros dropped: 26208.00 → '26,208', 14.40 → '14.4'."""
    text = f"{value:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_money(amount: Decimal | None, currency: str = "CNY", *, places: int = 2,
                 trim: bool = True) -> str:
    """'¥26,208', '¥14.4', '¥1.35'; trim=False keeps the places ('¥0.40') for ticking values."""
    if amount is None:
        return "?"
    quantum = Decimal(1).scaleb(-places)
    rounded = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    body = _group(rounded) if trim else f"{rounded:,.{places}f}"
    sign = "-" if rounded < 0 else ""
    return f"{sign}{symbol(currency)}{body.lstrip('-')}"


def format_price(price: Decimal | None, currency: str = "CNY") -> str:
    """A price per hour with at least one decimal, as the seed writes it: '¥3.0', '¥1.8'."""
    if price is None:
        return "?"
    text = _group(price.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))
    if "." not in text:
        text += ".0"
    return f"{symbol(currency)}{text}"


def format_number(value: Decimal | int | float, places: int = 1) -> str:
    """Hours, minutes, tokens: '45', '12.5', '1,024'."""
    quantum = Decimal(1).scaleb(-places)
    return _group(Decimal(str(value)).quantize(quantum, rounding=ROUND_HALF_UP))
