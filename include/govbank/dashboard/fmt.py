"""Numbers the Chinese way: 万 (10⁴) and 亿 (10⁸), as the district's reports write them.

Counts under 万 stay plain integers (837); larger ones become ``1.2万`` or ``3.05亿``.
Amounts (元) read best in 亿元 or 万元 with two decimals. Decimals in, strings out:
the marts hold exact decimals and rounding happens only here, for display.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

WAN = Decimal(10_000)
YI = Decimal(100_000_000)


def _dec(value: object) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value or 0))


def _trim(d: Decimal, places: int) -> str:
    """``places`` decimals, trailing zeros dropped: 1.20 -> 1.2, 3.00 -> 3."""
    q = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{q:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def count_zh(value: object) -> str:
    """837 -> '837'; 12345 -> '1.23万'; 250000000 -> '2.5亿'."""
    d = _dec(value)
    if abs(d) >= YI:
        return _trim(d / YI, 2) + "亿"
    if abs(d) >= WAN:
        return _trim(d / WAN, 2) + "万"
    return f"{d.quantize(Decimal(1), rounding=ROUND_HALF_UP):f}"


def yi(value: object) -> str:
    """Yuan as 亿元 with two decimals, the unit of the headline tiles: 1187000000 -> '11.87'."""
    return f"{(_dec(value) / YI).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):f}"


def amount_zh(value: object) -> str:
    """Yuan with the unit that reads best: '11.87亿元', '480万元', '3,500元'."""
    d = _dec(value)
    if abs(d) >= YI:
        return yi(d) + "亿元"
    if abs(d) >= WAN:
        return _trim(d / WAN, 2) + "万元"
    return f"{d.quantize(Decimal(1), rounding=ROUND_HALF_UP):,f}元"


def percent(value: object) -> str:
    """0.8372 -> '83.7%'."""
    return _trim(_dec(value) * 100, 1) + "%"
