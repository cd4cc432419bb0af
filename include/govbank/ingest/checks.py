"""The rules a file's rows pass besides reading: its suite (Great Expectations, a batch of
chunks at a time), the dataset's extra row rules, and duplicate keys across the file.

:class:`FileChecks` is one file's findings and counts while its chunks go by.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import ARRAY, Connection, Integer, Table, bindparam, delete, func, select

from govbank.domain.datasets import DatasetSpec
from govbank.domain.errors import FileRejected
from govbank.domain.issues import RowIssue
from govbank.domain.reasons import message
from govbank.ingest.merge import known_outlets
from govbank.util.text import log_safe

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from govbank.ingest.normalise import NormalisedChunk
    from govbank.ingest.stage import Staging

RowRule = Callable[["NormalisedChunk"], list[RowIssue]]


class UnknownOutlet:
    """Business at an outlet the bank never sent (closed ones count: old business)."""

    def __init__(self, conn: Connection, bank_code: str) -> None:
        import pyarrow as pa

        self.known = pa.array(sorted(known_outlets(conn, bank_code)), pa.string())

    def __call__(self, chunk: NormalisedChunk) -> list[RowIssue]:
        import pyarrow.compute as pc

        codes = chunk.columns["outlet_code"]
        unknown = pc.and_(codes.is_valid(), pc.invert(pc.is_in(codes, value_set=self.known)))
        if not pc.any(unknown).as_py():
            return []
        where = pc.indices_nonzero(unknown)
        return [
            RowIssue(int(chunk.lines[i]), "outlet_code", "UNKNOWN_OUTLET", message("UNKNOWN_OUTLET"), code)
            for i, code in zip(where.to_pylist(), codes.take(where).to_pylist(), strict=True)
        ]


# DatasetSpec.row_rules -> a rule made once per file from (connection, bank code)
ROW_RULES: dict[str, Callable[[Connection, str], RowRule]] = {"UNKNOWN_OUTLET": UnknownOutlet}


def merge_issues(parse_issues: list[RowIssue], gx_issues: Sequence[RowIssue]) -> list[RowIssue]:
    """Type errors first; a GX finding on a field that failed to parse says nothing new."""
    seen = {(i.line, i.field) for i in parse_issues}
    out = list(parse_issues)
    for g in gx_issues:
        if (g.line, g.field) in seen:
            continue
        seen.add((g.line, g.field))
        out.append(g)
    return out


def good_rows(chunk: NormalisedChunk, issues: list[RowIssue]) -> np.ndarray:
    """Boolean mask of the rows no issue names."""
    import numpy as np

    if not issues:
        return np.ones(len(chunk), dtype=bool)
    return ~np.isin(chunk.lines, np.fromiter((i.line for i in issues), dtype=np.int64))


def refused_keys(chunk: NormalisedChunk, good: np.ndarray, key_field: str) -> set[str]:
    import pyarrow as pa

    codes = chunk.columns[key_field].filter(pa.array(~good))
    return {c for c in codes.to_pylist() if c}


def frame(spec: DatasetSpec, chunks: list[NormalisedChunk]) -> pd.DataFrame:
    """Chunks as one Great Expectations batch: floats and datetimes, not decimal text.

    Text of few distinct values (types, statuses, outlet codes) becomes a pandas
    category: GX filters the whole frame for every expectation and row condition, and
    a category is filtered as small integer codes, not as strings.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    data: dict[str, object] = {"source_line": np.concatenate([c.lines for c in chunks])}
    for name in chunks[0].columns:
        if name in spec.frame_skip:
            continue
        values = pa.concat_arrays([c.columns[name] for c in chunks])
        if name in spec.numeric:
            data[name] = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_date32(values.type):
            data[name] = pc.cast(values, pa.timestamp("ns")).to_pandas()
        elif _few_distinct(values, pc):
            data[name] = values.dictionary_encode().to_pandas()
        else:
            data[name] = values.to_pandas()
    return pd.DataFrame(data)


def _few_distinct(values: pa.Array, pc: Any, sample: int = 2000) -> bool:
    """Whether a column looks like codes rather than ids: judged on its first rows."""
    head = values.slice(0, sample)
    return len(head) > 0 and pc.count_distinct(head).as_py() * 4 < len(head)


def duplicate_keys(conn: Connection, keys: Table) -> list[tuple[int, str]]:
    """(line, key) of every row whose key occurs more than once in the file."""
    dup = select(keys.c.key).group_by(keys.c.key).having(func.count() > 1).subquery()
    rows = conn.execute(
        select(keys.c.line, keys.c.key).join(dup, dup.c.key == keys.c.key).order_by(keys.c.line)
    )
    return [(r.line, r.key) for r in rows]


def duplicate_keys_of(conn: Connection, keys: Table, lines: Sequence[int]) -> list[tuple[int, str]]:
    """:func:`duplicate_keys` when every repeated key has an occurrence on one of ``lines``
    (PostgreSQL): two scans of the key table instead of grouping all of it."""
    if not lines:
        return []
    on_lines = select(func.unnest(bindparam("lines", list(lines), type_=ARRAY(Integer))))
    candidates = select(keys.c.key).where(keys.c.line.in_(on_lines))
    rows = conn.execute(
        select(keys.c.line, keys.c.key).where(keys.c.key.in_(candidates)).order_by(keys.c.line)
    ).all()
    seen: dict[str, int] = {}
    for r in rows:
        seen[r.key] = seen.get(r.key, 0) + 1
    return [(r.line, r.key) for r in rows if seen[r.key] > 1]


def drop_duplicated(conn: Connection, staging: Table, key_column: str, keys: Table) -> int:
    """Remove staged rows whose key the file holds twice; how many went."""
    dup = select(keys.c.key).group_by(keys.c.key).having(func.count() > 1)
    return conn.execute(delete(staging).where(staging.c[key_column].in_(dup))).rowcount


class TooManyInvalid(FileRejected):
    """``TOO_MANY_INVALID`` with the issues counted per reason beyond those kept in detail."""

    def __init__(self, message_zh: str, *, omitted: Counter[str], **kw: Any) -> None:
        super().__init__("TOO_MANY_INVALID", message_zh, **kw)
        self.omitted = omitted


class FileChecks:
    """One file's findings and counts while its chunks pass, then its whole-file rules.

    The validation run is opened at the first batch: the validator may still be
    importing GX while the first chunks are read. At most ``keep`` issues are held in
    detail; the rest are only counted per reason (``omitted``), so a file of a million
    bad rows costs the memory of ``keep`` issues, and its counts stay exact.
    """

    def __init__(
        self, spec: DatasetSpec, validator: Callable[[], Any], file_name: str,
        params: dict[str, Any], rules: Sequence[RowRule], keep: int = 10_000,
    ) -> None:
        self.spec, self.file_name, self.params, self.rules = spec, file_name, params, list(rules)
        self._validator = validator
        self._run: Any = None
        self.keep = keep
        self.issues: list[RowIssue] = []
        self.omitted: Counter[str] = Counter()  # reason -> issues past ``keep``, not held
        self.rows_total = 0
        self.rows_loaded = 0
        self.refused: set[str] = set()  # sent but refused: not "left out" of a snapshot
        self._checked = 0  # rows through the row rules so far, for the progress line
        self._bad = 0
        self._started = time.monotonic()

    def add(self, issues: Iterable[RowIssue]) -> None:
        """Issues held in detail up to ``keep``; past it only counted per reason."""
        for issue in issues:
            if len(self.issues) < self.keep:
                self.issues.append(issue)
            else:
                self.omitted[issue.reason_code] += 1

    @property
    def rows_rejected(self) -> int:
        return self.rows_total - self.rows_loaded

    def _validation(self) -> Any:
        if self._run is None:
            self._run = self._validator().file_run(self.spec.suite, self.file_name)
        return self._run

    def check_batch(self, chunks: list[NormalisedChunk]) -> Iterator[tuple[NormalisedChunk, np.ndarray]]:
        """One GX validation for ``chunks``; each chunk with the mask of its good rows."""
        import numpy as np

        outcome = self._validation().validate(frame(self.spec, chunks), params=self.params)
        found = sorted(outcome.issues, key=lambda i: i.line)
        found_lines = np.fromiter((i.line for i in found), dtype=np.int64, count=len(found))
        for chunk in chunks:
            lo = int(np.searchsorted(found_lines, chunk.lines[0], side="left"))
            hi = int(np.searchsorted(found_lines, chunk.lines[-1], side="right"))
            chunk_issues = merge_issues(chunk.issues, found[lo:hi])
            for rule in self.rules:
                chunk_issues += rule(chunk)
            self.add(chunk_issues)
            good = good_rows(chunk, chunk_issues)
            if self.spec.snapshot:
                self.refused.update(refused_keys(chunk, good, self.spec.key_field))
            self._checked += len(chunk)
            self._bad += int(len(good) - good.sum())
            yield chunk, good
        elapsed = max(time.monotonic() - self._started, 1e-6)
        log.info(
            "file=%s checked %d rows (%.0f rows/s), %d refused so far",
            log_safe(self.file_name), self._checked, self._checked / elapsed, self._bad,
        )

    def add_malformed(self, malformed: Sequence[tuple[int, str]]) -> None:
        """Lines the reader could not split into the header's fields."""
        self.add(RowIssue(line, "", "MALFORMED_ROW", f"{message('MALFORMED_ROW')}：{why}") for line, why in malformed)
        self.rows_total += len(malformed)

    def refuse_duplicates(self, conn: Connection, staging: Staging) -> None:
        """Every occurrence of a key the file holds twice is refused, staged or inserted early."""
        early, key = staging.early, self.spec.key_field
        if early is not None and early.complete and not self.omitted:  # every bad line known
            dups = duplicate_keys_of(conn, staging.keys, sorted({i.line for i in self.issues}))
        else:
            dups = duplicate_keys(conn, staging.keys)
        if not dups:
            return
        flagged = {(i.line, i.field) for i in self.issues}
        self.add(
            RowIssue(line, key, "DUPLICATE_KEY", message("DUPLICATE_KEY"), value)
            for line, value in dups
            if (line, key) not in flagged
        )
        self.rows_loaded -= drop_duplicated(conn, staging.table, key, staging.keys)
        if early is not None:
            self.rows_loaded -= early.undo_duplicated(conn, (value for _, value in dups))
        if self.spec.snapshot:
            self.refused.update(value for _, value in dups)

    def check_count(self, expected_rows: int | None) -> None:
        """The row count the ``.ok`` file declared."""
        if expected_rows is not None and expected_rows != self.rows_total:
            raise FileRejected(
                "OK_ROWS_MISMATCH", f"控制文件(.ok)声明 {expected_rows} 行，文件中有 {self.rows_total} 行",
                rows_total=self.rows_total,
            )

    def publish(self) -> str | None:
        """The file's Data Docs page (a file of no rows still gets one)."""
        return self._validation().publish()

    def check_threshold(self, threshold: float, docs: str | None) -> None:
        """Too many refused rows refuse the file; a header-only file is valid v1."""
        total = self.rows_total
        if total and self.rows_rejected / total > threshold:
            raise TooManyInvalid(
                f"{message('TOO_MANY_INVALID')}（无效 {self.rows_rejected} 行 / 共 {total} 行，阈值 {threshold:.0%}）",
                rows_total=total, issues=self.issues, data_docs=docs, omitted=self.omitted,
            )


def pieces(chunk: NormalisedChunk, rows: int) -> Iterator[NormalisedChunk]:
    """``chunk`` in pieces of at most ``rows`` rows, each with its own issues."""
    from govbank.ingest.normalise import NormalisedChunk

    if len(chunk) <= rows:
        yield chunk
        return
    for start in range(0, len(chunk), rows):
        lines = chunk.lines[start : start + rows]
        first, last = int(lines[0]), int(lines[-1])
        yield NormalisedChunk(
            lines,
            {name: col.slice(start, len(lines)) for name, col in chunk.columns.items()},
            [i for i in chunk.issues if first <= i.line <= last],
        )
