"""The vectorised custom expectations give what the scalar rules give, value by value.

``valid_uscc`` / ``valid_resident_id`` (numpy over code points or UTF-8 bytes) against
``govbank.domain.identifiers`` on random strings, near-valid codes and odd values, for columns of
``object`` and ``str`` (pyarrow-backed) dtype; then a GX validation on both dtypes.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from govbank.domain.identifiers import (
    USCC_CHARSET,
    is_valid_resident_id,
    resident_id_check_digit,
    uscc_check_char,
)
from govbank.domain.reference import uscc_exceptions
from govbank.validate.expectations import _uscc_ok, valid_resident_id, valid_uscc
from tests.conftest import ROOT
from tests.unit.test_validate import elic_row

USCC_OK = "91330304MA2ABCDE0T"
ID_OK = "11010519491231002X"

pytestmark = pytest.mark.timeout(300)

# characters that matter to the rules, and look-alikes that must fail
_TRICKY = (
    USCC_CHARSET
    + USCC_CHARSET.lower()
    + "IOZSVxX"
    + "０１２３４５６７８９Ｘ"  # full-width digits and X
    + "٣۳߃३"  # other scripts' digits (str.isdigit() is True)
    + "é\x00 \t\n\x7f\x80ÿĀ😀"
)
_tricky_char = st.sampled_from(_TRICKY)
_any_char = st.characters(codec="utf-8")  # no surrogates: those cannot be a pyarrow string


@st.composite
def _near_uscc(draw: st.DrawFn) -> str:
    body = draw(st.text(st.sampled_from(USCC_CHARSET), min_size=17, max_size=17))
    code = body + uscc_check_char(body)
    return draw(_mutated(code))


@st.composite
def _near_resident_id(draw: st.DrawFn) -> str:
    body = draw(st.text(st.sampled_from("0123456789"), min_size=17, max_size=17))
    code = body + resident_id_check_digit(body)
    return draw(_mutated(code))


@st.composite
def _mutated(draw: st.DrawFn, code: str) -> str:
    """The code itself, or with one change a bank's file could carry."""
    how = draw(
        st.sampled_from(["keep", "keep", "replace", "alias", "lower", "insert", "drop", "swap"])
    )
    i = draw(st.integers(0, len(code) - 1))
    if how == "replace":
        return code[:i] + draw(_tricky_char) + code[i + 1 :]
    if how == "alias":  # same low byte (U+01xx) or the full-width form (U+FFxx)
        shift = draw(st.sampled_from([0x100, 0x1000, 0xFEE0]))
        return code[:i] + chr(ord(code[i]) + shift) + code[i + 1 :]
    if how == "lower":
        return code.lower()
    if how == "insert":
        return code[:i] + draw(_tricky_char) + code[i:]
    if how == "drop":
        return code[:i] + code[i + 1 :]
    if how == "swap" and i < len(code) - 1:
        return code[:i] + code[i + 1] + code[i] + code[i + 2 :]
    return code


_strings = st.one_of(
    _near_uscc(),
    _near_resident_id(),
    st.text(_tricky_char, min_size=17, max_size=19),
    st.text(_any_char, min_size=18, max_size=18),
    st.text(_any_char, max_size=30),
)
_others = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(min_size=18, max_size=18),
    st.just(pd.NA),
    st.just(np.str_(USCC_OK)),  # a str subclass passes like a str
    st.just(110105194912310021),  # the digits of an ID, but not a string
)


def _expected(values: list, exceptions: frozenset[str]) -> tuple[list[bool], list[bool]]:
    return (
        [_uscc_ok(v, exceptions) for v in values],
        [is_valid_resident_id(v) for v in values],
    )


def _index(n: int, seed: int) -> pd.Index:
    """A non-default index, as GX hands over after dropping nulls."""
    return pd.Index(np.random.default_rng(seed).permutation(3 * n)[:n] + 7)


def _check(column: pd.Series, values: list, exceptions: frozenset[str]) -> None:
    uscc, resident = _expected(values, exceptions)
    got_uscc = valid_uscc(column, exceptions)
    got_resident = valid_resident_id(column)
    for got, want in ((got_uscc, uscc), (got_resident, resident)):
        assert got.dtype == bool
        assert got.index.equals(column.index)
        wrong = [(v, g, w) for v, g, w in zip(values, got, want, strict=True) if g != w]
        assert got.tolist() == want, wrong


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.one_of(_strings, _others), max_size=40),
    listed=st.lists(st.integers(0, 39), max_size=3),
    seed=st.integers(0, 2**16),
)
@example(values=[USCC_OK, ID_OK, USCC_OK.lower(), ID_OK[:17] + "x", None], listed=[], seed=0)
@example(values=["９" * 17 + "X", "1" * 17 + "Ｘ", "\x00" * 18], listed=[], seed=1)
def test_object_column_matches_the_scalar_rules(values: list, listed: list[int], seed: int) -> None:
    # some of the strings are on the exception list (which passes any of them)
    exceptions = frozenset(
        values[i] for i in listed if i < len(values) and isinstance(values[i], str)
    )
    column = pd.Series(values, dtype=object, index=_index(len(values), seed))
    _check(column, values, exceptions)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.one_of(_strings, st.none()), max_size=40),
    listed=st.lists(st.integers(0, 39), max_size=3),
    seed=st.integers(0, 2**16),
    start=st.integers(0, 5),
)
@example(values=["é" * 9, "😀" * 4 + "ab", USCC_OK, ID_OK], listed=[], seed=0, start=0)
def test_str_column_matches_the_scalar_rules(
    values: list, listed: list[int], seed: int, start: int
) -> None:
    """pandas' ``str`` dtype (large_string), sliced and in several chunks; arrow ``string``."""
    exceptions = frozenset(values[i] for i in listed if i < len(values) and values[i] is not None)
    half = len(values) // 2
    column = pd.concat(  # two pyarrow chunks
        [pd.Series(values[:half], dtype="str"), pd.Series(values[half:], dtype="str")]
    )
    column.index = _index(len(values), seed)
    as_objects = [None if v is None else v for v in values]
    _check(column, as_objects, exceptions)
    _check(column.iloc[start:], as_objects[start:], exceptions)  # offset into the buffers
    kept = column[column.notna()]  # what GX passes: nulls dropped
    _check(kept, [v for v in values if v is not None], exceptions)
    narrow = pd.Series(values, dtype=pd.ArrowDtype(pa.string()))  # int32 offsets
    _check(narrow, as_objects, exceptions)
    python = pd.Series(values, dtype=pd.StringDtype("python"))
    _check(python, as_objects, exceptions)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.text(_any_char, min_size=18, max_size=18), max_size=20))
def test_object_column_with_surrogates(values: list[str]) -> None:
    """Lone surrogates cannot be UTF-8, but an object column can hold them."""
    values = [v[:5] + "\ud800" + v[6:] for v in values] + values
    _check(pd.Series(values, dtype=object), values, frozenset())


def test_bytes_under_a_null_are_ignored() -> None:
    """Arrow need not zero the offsets of a null slot: a null over a valid code fails."""
    data = (USCC_OK + ID_OK).encode()
    offsets = pa.py_buffer(np.array([0, 18, 36], dtype=np.int64).tobytes())
    validity = pa.py_buffer(np.packbits([0, 1], bitorder="little").tobytes())
    array = pa.LargeStringArray.from_buffers(2, offsets, pa.py_buffer(data), validity)
    assert array.to_pylist() == [None, ID_OK]
    column = pd.Series(pd.arrays.ArrowExtensionArray(array))
    assert valid_uscc(column, frozenset()).tolist() == [False, False]
    assert valid_resident_id(column).tolist() == [False, True]


def test_default_exception_list_and_empty_columns() -> None:
    values = [USCC_OK, USCC_OK[:17] + "U", *sorted(uscc_exceptions())]
    column = pd.Series(values, dtype=object)
    assert valid_uscc(column).tolist() == [_uscc_ok(v, uscc_exceptions()) for v in values]
    assert valid_uscc(column, frozenset({USCC_OK[:17] + "U"})).tolist()[:2] == [True, True]
    for dtype in (object, "str"):
        empty = pd.Series([], dtype=dtype, index=pd.Index([], dtype="int64"))
        assert valid_uscc(empty).tolist() == [] and valid_resident_id(empty).tolist() == []
    nulls = pd.Series([None, None], dtype="str")
    assert valid_uscc(nulls).tolist() == [False, False]
    assert valid_resident_id(nulls).tolist() == [False, False]


def test_large_column() -> None:
    """Several blocks of rows (and, for ``str``, several pyarrow chunks)."""
    rng = np.random.default_rng(7)
    bodies = ["".join(rng.choice(list(USCC_CHARSET), 17)) for _ in range(2000)]
    codes: list = [b + uscc_check_char(b) for b in bodies]
    codes += [c[:17] + ("0" if c[17] != "0" else "1") for c in codes[:500]]
    codes += [ID_OK, None, ID_OK[:17] + "x"]
    values = [codes[i] for i in rng.integers(0, len(codes), 150_000)]
    for dtype in (object, "str"):
        column = pd.Series(values, dtype=dtype, index=_index(len(values), 3))
        if dtype == "str":
            column = pd.concat([column.iloc[:70_000], column.iloc[70_000:]])
        _check(column, values, frozenset(codes[2000:2003]))


# ---------------------------------------------------------------- through GX, both dtypes


@pytest.fixture(scope="module")
def validator():  # type: ignore[no-untyped-def]
    from govbank.validate import Validator

    return Validator(ROOT / "expectations")


_TEXT = ("biz_id", "outlet_code", "biz_type", "uscc", "enterprise_name", "legal_rep_id")
_TEXT += ("loan_product", "status")


def _frame(rows: list[dict], dtype: str) -> pd.DataFrame:
    data = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        if name in _TEXT:
            data[name] = pd.Series(values, dtype=object if dtype == "object" else "str")
        elif name == "biz_date":
            data[name] = pd.to_datetime(pd.Series(values)).astype("datetime64[ns]")
        elif name == "source_line":
            data[name] = pd.Series(values, dtype="int64")
        else:
            data[name] = pd.Series(values, dtype="float64")
    return pd.DataFrame(data)


def test_gx_validation_with_object_and_str_columns(validator) -> None:  # type: ignore[no-untyped-def]
    rows = [
        elic_row(2),
        elic_row(3, legal_rep_id=None),  # optional: skipped
        elic_row(4, uscc=USCC_OK[:17] + "U"),
        elic_row(5, uscc=USCC_OK.lower()),
        elic_row(6, uscc="９１３３０３０４ＭＡ２ＡＢＣＤＥ０Ｔ"),  # full width
        elic_row(7, uscc=USCC_OK + " "),
        elic_row(8, uscc=""),
        elic_row(9, legal_rep_id=ID_OK[:17] + "x"),
        elic_row(10, legal_rep_id="１" + ID_OK[1:]),
        elic_row(11, legal_rep_id="110105194912310021"),
        elic_row(12, legal_rep_id="330304198001010011"),
        elic_row(13, uscc=None),
        elic_row(14, biz_id=None, uscc="91330000MA2C1B2A62"),
    ]
    expected = {
        (4, "uscc", "INVALID_USCC"),
        (5, "uscc", "INVALID_USCC"),
        (6, "uscc", "INVALID_USCC"),
        (7, "uscc", "INVALID_USCC"),
        (8, "uscc", "INVALID_USCC"),
        (9, "legal_rep_id", "INVALID_RESIDENT_ID"),
        (10, "legal_rep_id", "INVALID_RESIDENT_ID"),
        (11, "legal_rep_id", "INVALID_RESIDENT_ID"),
        (13, "uscc", "REQUIRED_MISSING"),
        (14, "biz_id", "REQUIRED_MISSING"),
    }
    outcomes = {}
    for dtype in ("object", "str"):
        frame = _frame(rows, dtype)
        assert (frame["uscc"].dtype == object) is (dtype == "object")
        out = validator.validate(
            "ELIC", frame, run_name=dtype, params={"file_date": dt.date(2023, 6, 15)}
        )
        outcomes[dtype] = {(i.line, i.field, i.reason_code) for i in out.issues}
        assert outcomes[dtype] == expected, dtype
        # and chunk by chunk, the same rows
        run = validator.file_run("ELIC", dtype)
        chunked = set()
        for start in range(0, len(frame), 5):
            chunk = run.validate(frame.iloc[start : start + 5], params={"file_date": "2023-06-15"})
            chunked |= {(i.line, i.field, i.reason_code) for i in chunk.issues}
        assert chunked == expected and run.publish() is None  # no Data Docs site here
