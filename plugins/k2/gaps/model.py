"""What a gap in an exchange's trade ids is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Gap:
    exchange: str  # k2 exchange name, e.g. "binance"
    symbol: str  # normalised BASE-QUOTE, as Silver's `symbol`
    exchange_symbol: str  # as the exchange spells it (Silver's `exchange_symbol`)
    first_missing_id: int
    last_missing_id: int
    after_time: datetime  # event_time (UTC) of the last trade before the gap
    before_time: datetime  # event_time (UTC) of the first trade after the gap

    @property
    def missing_count(self) -> int:
        return self.last_missing_id - self.first_missing_id + 1
