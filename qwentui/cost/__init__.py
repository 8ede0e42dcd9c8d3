"""Cost: prices, the live meter, the crash-safe ledger, reports and the cost planner.

No UI here: the meter gives frozen `CostSnapshot`s, the ledger is plain SQLite.
"""

from qwentui.cost.ledger import STOP_REASONS, Ledger, LedgerDataError, LedgerError, SessionRow
from qwentui.cost.meter import CostSnapshot, Meter
from qwentui.cost.prices import format_money, format_price, price_per_hour

__all__ = ["STOP_REASONS", "CostSnapshot", "Ledger", "LedgerDataError", "LedgerError", "Meter",
           "SessionRow", "format_money", "format_price", "price_per_hour"]
