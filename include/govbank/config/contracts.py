"""Bank contracts: one YAML file per bank, validated by pydantic when loaded.

Onboarding a bank is a new file in the contracts folder (``GOVBANK_CONTRACTS_DIR``),
not new code. Everything a contract names is checked against the known datasets and
fields, so a contract cannot smuggle an identifier into SQL.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from govbank.domain.datasets import FIELDS, Dataset, default_headers
from govbank.domain.errors import ConfigError

BankCode = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{2,16}$")]
# a header name is words: letters (Chinese included), digits, spaces and the few marks
# real exports use, e.g. 授信金额（万元）; never quotes, semicolons, comments or a formula
_HEADER = re.compile(r"[\w ()（）【】\[\]/.·、%&+\-:：]+")
_HEADER_FORBIDDEN = ("--", "/*", "*/")


class AmountUnit(StrEnum):
    YUAN = "元"
    WAN_YUAN = "万元"


class FeedContract(BaseModel):
    """How one bank sends one dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    headers: dict[str, Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=dict,
        description="canonical field -> the bank's header; fields left out use the template",
    )
    date_formats: tuple[str, ...] = ("%Y-%m-%d", "%Y%m%d")
    amount_unit: AmountUnit = AmountUnit.YUAN
    delimiter: Literal[",", "|", "auto"] = "auto"
    reject_threshold: float = Field(0.05, ge=0, le=1)
    expected_every_days: int = Field(1, ge=1, le=366, description="cadence, like dbt freshness")
    warn_after_days: int = Field(1, ge=0, le=366, description="days late before an alert")
    deadline_hour: int = Field(20, ge=0, le=23, description="local hour the day's file is due")

    @field_validator("headers")
    @classmethod
    def _plain_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for field, header in headers.items():
            if (
                not _HEADER.fullmatch(header)
                or header != header.strip()
                or header.startswith(("+", "-"))
                or any(s in header for s in _HEADER_FORBIDDEN)
            ):
                raise ValueError(f"header of {field} is not a plain name: {header!r}")
        return headers

    def header_map(self, dataset: Dataset) -> dict[str, str]:
        """Canonical field -> header, with the template filling what the bank kept."""
        merged = default_headers(dataset)
        merged.update(self.headers)
        return merged


class BankContract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bank_code: BankCode
    bank_name: str = Field(min_length=1, max_length=100)
    joined_on: dt.date
    feeds: dict[Dataset, FeedContract]

    @model_validator(mode="after")
    def _known_fields_only(self) -> BankContract:
        for dataset, feed in self.feeds.items():
            known = {f.name for f in FIELDS[dataset]}
            unknown = sorted(set(feed.headers) - known)
            if unknown:
                raise ValueError(f"{dataset}: unknown canonical fields {unknown}")
            headers = list(feed.header_map(dataset).values())
            dupes = sorted({h for h in headers if headers.count(h) > 1})
            if dupes:
                raise ValueError(f"{dataset}: the same header maps two fields: {dupes}")
        return self


def load_contract(path: Path) -> BankContract:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        contract = BankContract.model_validate(raw)
    except (yaml.YAMLError, ValidationError, UnicodeDecodeError) as exc:
        raise ConfigError(f"contract {path.name} is invalid: {exc}") from exc
    if path.stem != contract.bank_code:
        raise ConfigError(f"contract {path.name} declares bank_code {contract.bank_code}")
    return contract


def load_contracts(directory: Path) -> dict[str, BankContract]:
    """All contracts in a folder, keyed by bank code; one bad file stops the load."""
    if not directory.is_dir():
        raise ConfigError(f"contracts folder {directory} does not exist")
    return {c.bank_code: c for c in (load_contract(p) for p in sorted(directory.glob("*.yaml")))}
