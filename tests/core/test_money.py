"""Money: Decimal in, two places out, rounded half up; floats refused."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbroker.core.money import CENT, format_money, to_money

try:
    from tests.core import strategies as cs
except ImportError:  # tests/core itself is on sys.path (pytest's default rootdir-less import mode)
    import strategies as cs  # type: ignore[no-redef]


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_refused(value):
    with pytest.raises(TypeError):
        to_money(value)


@pytest.mark.parametrize("value", [True, None, [1], 1j])
def test_other_types_are_refused(value):
    with pytest.raises(TypeError):
        to_money(value)


@pytest.mark.parametrize(
    "value",
    # "-0.001" rounds to 0.00 but is still a negative amount: refused, not rounded away
    ["-0.01", "-0.001", Decimal("-0.004"), -1, Decimal("-5"), "NaN", "Infinity", Decimal("-Infinity"), "abc", ""],
)
def test_negative_non_finite_and_garbage_are_refused(value):
    with pytest.raises(ValueError):
        to_money(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("45", "45.00"),
        (45, "45.00"),
        ("0.005", "0.01"),
        ("0.004", "0.00"),
        ("2.675", "2.68"),
        ("1.994999", "1.99"),
        (" 12.5 ", "12.50"),
        ("-0", "0.00"),
        (Decimal("1E+2"), "100.00"),
    ],
)
def test_quantizes_half_up_to_cents(value, expected):
    result = to_money(value)

    assert result == Decimal(expected)
    assert str(result) == expected


@given(cs.money())
def test_to_money_is_the_half_up_cent_rounding(value):
    result = to_money(value)

    assert result == value.quantize(CENT, rounding=ROUND_HALF_UP)
    assert result.as_tuple().exponent == -2
    assert abs(result - value) <= Decimal("0.005")
    assert to_money(result) == result
    assert to_money(str(value)) == result


@given(st.integers(0, 10**12))
def test_integers_are_whole_amounts(value):
    assert to_money(value) == Decimal(value)


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (Decimal("45"), "USD", "$45.00"),
        (Decimal("1234.5"), "USD", "$1,234.50"),
        (Decimal("-5"), "USD", "-$5.00"),
        (Decimal("-0.004"), "USD", "$0.00"),  # no "-$0.00": the sign is the rounded amount's
        (Decimal("-0.005"), "USD", "-$0.01"),
        ("0.005", "usd", "$0.01"),
        (Decimal("12"), "MXN", "12.00 MXN"),
        (Decimal("3.5"), "EUR", "€3.50"),
    ],
)
def test_format_money(amount, currency, shown):
    assert format_money(amount, currency) == shown


def test_format_money_refuses_floats():
    with pytest.raises(TypeError):
        format_money(1.5)
