"""Keyed pseudonyms for personal identifiers.

A plain hash of an 18-digit ID can be reversed by enumerating birth dates and
regions; an HMAC with a secret key cannot. The key comes from an Airflow connection
(``govbank_pseudonym``) or ``GOVBANK_PSEUDONYM_KEY``, never from code.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from govbank.domain.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

MIN_KEY_BYTES = 16


def check_key(key: str | bytes) -> bytes:
    data = key.encode("utf-8") if isinstance(key, str) else key
    if len(data) < MIN_KEY_BYTES:
        raise ConfigError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
    return data



def pseudonymise(key: bytes, identifier: str | None) -> str | None:
    if identifier is None:
        return None
    normalised = identifier.strip().upper().encode("utf-8")
    return hmac.new(key, normalised, hashlib.sha256).hexdigest()


def mask(value: str | None) -> str | None:
    """What a person may see of a personal value: its first and last character."""
    if value is None:
        return None
    if len(value) <= 2:
        return "*" * len(value)
    return value[0] + "*" * (len(value) - 2) + value[-1]


def pseudonymise_many(key: bytes, identifiers: list[str | None]) -> list[str | None]:
    """:func:`pseudonymise` for a column, with the same digests.

    HMAC-SHA256 as RFC 2104 builds it, on hashlib: the key's inner and outer states are
    hashed once and copied per value. ``hmac.new`` (or an HMAC object's ``copy``) per value
    costs half as much again in Python-level wrapping, and a file has millions of IDs.
    """
    inner, outer = _keyed_states(key)
    copy_inner, copy_outer = inner.copy, outer.copy
    out: list[str | None] = []
    append = out.append
    for v in identifiers:
        if v is None:
            append(None)
            continue
        i = copy_inner()
        i.update(v.strip().upper().encode("utf-8"))
        o = copy_outer()
        o.update(i.digest())
        append(o.hexdigest())
    return out


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _keyed_states(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 after the inner and the outer padded key (RFC 2104 §2)."""
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def pseudonymise_column(key: bytes, identifiers: pa.Array | pa.ChunkedArray) -> pa.Array:
    """:func:`pseudonymise_many` of an Arrow string column, each distinct value once.

    One person is the legal representative of many businesses: their ID recurs.
    """
    import pyarrow as pa

    if isinstance(identifiers, pa.ChunkedArray):
        identifiers = identifiers.combine_chunks()
    encoded = identifiers.dictionary_encode()
    digests = pa.array(pseudonymise_many(key, encoded.dictionary.to_pylist()), pa.string())
    return digests.take(encoded.indices)
