"""Keyed pseudonyms for personal identifiers.

A plain hash of an 18-digit ID can be reversed by enumerating birth dates and
regions; an HMAC with a secret key cannot. The key comes from an Airflow connection
(``govbank_pseudonym``) or ``GOVBANK_PSEUDONYM_KEY``, never from code.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from govbank.errors import ConfigError

KEY_ENV = "GOVBANK_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16


def check_key(key: str | bytes) -> bytes:
    data = key.encode("utf-8") if isinstance(key, str) else key
    if len(data) < MIN_KEY_BYTES:
        raise ConfigError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
    return data


def key_from_env() -> bytes:
    value = os.environ.get(KEY_ENV)
    if not value:
        raise ConfigError(f"no pseudonym key: set {KEY_ENV} or the govbank_pseudonym connection")
    return check_key(value)


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
    """:func:`pseudonymise` for a column: the one-shot C HMAC, same digests."""
    digest = hmac.digest
    return [
        None if v is None else digest(key, v.strip().upper().encode("utf-8"), "sha256").hex()
        for v in identifiers
    ]
