"""Gaps in the exchanges' sequential trade ids: found by the batch, recorded in ``ops.trade_gaps``."""
