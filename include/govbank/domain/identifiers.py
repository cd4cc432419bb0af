"""Check characters of Chinese identifiers, as pure functions.

The Great Expectations custom expectations and the demo generator both use these, so
the rule lives in one place.
"""

from __future__ import annotations

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100-2015: no I, O, Z, S, V
_USCC_VALUE = {c: i for i, c in enumerate(USCC_CHARSET)}
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def uscc_check_char(first17: str) -> str:
    """The 18th character of a unified social credit code (GB 32100-2015)."""
    total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def is_valid_uscc(code: object) -> bool:
    if not isinstance(code, str) or len(code) != 18:
        return False
    if any(c not in _USCC_VALUE for c in code):
        return False
    return uscc_check_char(code[:17]) == code[17]


def resident_id_check_digit(first17: str) -> str:
    """The 18th character of a resident ID number (GB 11643-1999)."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def is_valid_resident_id(number: object) -> bool:
    if not isinstance(number, str) or len(number) != 18:
        return False
    if not number[:17].isascii() or not number[:17].isdigit():
        return False
    return resident_id_check_digit(number[:17]) == number[17]
