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

    The key is set up once and the keyed state copied per value: a one-shot
    ``hmac.new`` per value would redo the key schedule every time.
    """
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    out: list[str | None] = []
    append = out.append
    for v in identifiers:
        if v is None:
            append(None)
            continue
        mac = keyed.copy()
        mac.update(v.strip().upper().encode("utf-8"))
        append(mac.hexdigest())
    return out


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
