"""Bounds of GX's between conditions made decimal for decimal columns (k2.quality.spark_metrics)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pyspark.sql.types import DecimalType, DoubleType, LongType

from k2.quality.spark_metrics import decimal_bound

PRICE = DecimalType(38, 18)


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        (0.0, Decimal("0")),
        (0, Decimal("0")),
        (0.1, Decimal("0.1")),  # the bound as written, not the double nearest to it
        (1e-18, Decimal("1e-18")),
        (12345678901234567890, Decimal("12345678901234567890")),  # 20 integral digits: fits
    ],
)
def test_a_numeric_bound_a_decimal_column_can_hold_becomes_that_decimal(bound, expected) -> None:
    assert decimal_bound(bound, PRICE) == expected
    assert isinstance(decimal_bound(bound, PRICE), Decimal)


@pytest.mark.parametrize(
    ("bound", "kind"),
    [
        (1e-19, PRICE),  # finer than the column's scale
        (1e21, PRICE),  # more integral digits than it holds
        (float("inf"), PRICE),
        (True, PRICE),
        ("0", PRICE),
        (None, PRICE),
        (0.0, DoubleType()),
        (0, LongType()),
    ],
)
def test_any_other_bound_is_left_as_gx_has_it(bound, kind) -> None:
    assert decimal_bound(bound, kind) is bound
