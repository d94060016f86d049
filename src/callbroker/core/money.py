"""Money as ``Decimal`` with two places: parse, quantize, format. Never ``float``.

Every amount that enters the core (a buyer's price, a publisher's payout, a ledger line) goes
through :func:`to_money`, so rounding happens once, in one way (half up, to the cent).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

# Display symbols for the currencies we expect; anything else is shown as "12.50 XYZ".
_SYMBOLS = {"USD": "$", "CAD": "CA$", "AUD": "A$", "EUR": "€", "GBP": "£"}


def to_money(value: str | int | Decimal) -> Decimal:
    """Return ``value`` as a non-negative ``Decimal`` quantized to cents, rounding half up.

    ``float`` (and ``bool``) are refused with ``TypeError``: a float has already lost the cents.
    Negative, NaN, infinite or unparsable values raise ``ValueError``. ``-0`` becomes ``0.00``.
    """
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"money must be str, int or Decimal, not {type(value).__name__}")
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not an amount of money: {value!r}") from None
    else:
        raise TypeError(f"money must be str, int or Decimal, not {type(value).__name__}")
    if not amount.is_finite():
        raise ValueError(f"money must be finite, got {value!r}")
    if amount < 0:
        raise ValueError(f"money must not be negative, got {value!r}")
    try:
        quantized = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation:  # more digits than the decimal context can hold
        raise ValueError(f"amount too large: {value!r}") from None
    return quantized.copy_abs()  # turns -0.00 into 0.00


def format_money(amount: str | int | Decimal, currency: str = "USD") -> str:
    """Format an amount for people: ``"$45.00"``, ``"$1,234.50"``, ``"-$5.00"``, ``"12.00 MXN"``.

    Negative amounts are allowed here (ledger credits and reversals are shown, not parsed).
    """
    if isinstance(amount, bool) or isinstance(amount, float):
        raise TypeError(f"money must be str, int or Decimal, not {type(amount).__name__}")
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation:
        raise ValueError(f"not an amount of money: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"money must be finite, got {amount!r}")
    quantized = value.quantize(CENT, rounding=ROUND_HALF_UP)
    sign = "-" if quantized < 0 else ""
    digits = f"{quantized.copy_abs():,.2f}"
    code = currency.upper()
    symbol = _SYMBOLS.get(code)
    if symbol is None:
        return f"{sign}{digits} {code}"
    return f"{sign}{symbol}{digits}"
