"""Bank contracts: one YAML file per bank, validated by pydantic when loaded.

Onboarding a bank is a new file in the contracts folder (``GOVBANK_CONTRACTS_DIR``),
not new code. Everything a contract names is checked against the known datasets and
fields, so a contract cannot smuggle an identifier into SQL.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
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


# a contract is a page of YAML; a bigger file is a mistake or an attack, never read whole
MAX_CONTRACT_BYTES = 256 * 1024


class _ContractLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases, and with dates left as text.

    Aliases are how a few hundred bytes expand to gigabytes ("billion laughs"), and a
    contract never needs them; they are refused as the parser meets them, before any
    expansion. Dates stay text for pydantic, which names the field when one is wrong
    (PyYAML's own date constructor raises a bare ``ValueError``).
    """

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&, *) are not allowed in a contract", event.start_mark
            )
        return super().compose_node(parent, index)


_ContractLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _brief(exc: ValidationError, limit: int = 5) -> str:
    """``field.path: message`` for the first few errors, without the input echoed back."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def load_contract(path: Path) -> BankContract:
    """One contract; whatever is wrong is a ``ConfigError`` naming the file and the field."""
    try:
        if path.stat().st_size > MAX_CONTRACT_BYTES:
            raise ConfigError(f"contract {path.name}: over {MAX_CONTRACT_BYTES} bytes")
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_ContractLoader)
        contract = BankContract.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"contract {path.name} is invalid: {_brief(exc)}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"contract {path.name} is not valid YAML{where}: {problem}") from exc
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise ConfigError(f"contract {path.name} is invalid: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if path.stem != contract.bank_code:
        raise ConfigError(f"contract {path.name}: bank_code is {contract.bank_code}, not the file's name")
    return contract


def load_contracts(directory: Path) -> dict[str, BankContract]:
    """All contracts in a folder, keyed by bank code; one bad file stops the load."""
    if not directory.is_dir():
        raise ConfigError(f"contracts folder {directory} does not exist")
    return {c.bank_code: c for c in (load_contract(p) for p in sorted(directory.glob("*.yaml")))}


@dataclass(frozen=True)
class ContractProblem:
    """A contract that did not load: its file, the bank it is named for, and why."""

    file: str
    bank_code: str
    error: str


def load_contracts_report(directory: Path) -> tuple[dict[str, BankContract], list[ContractProblem]]:
    """The good contracts, and a problem for each bad one: a bad contract stops only its
    own bank (whose run should alert with the problem), never the others."""
    if not directory.is_dir():
        raise ConfigError(f"contracts folder {directory} does not exist")
    good: dict[str, BankContract] = {}
    problems: list[ContractProblem] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            contract = load_contract(path)
        except ConfigError as exc:
            problems.append(ContractProblem(path.name, path.stem, str(exc)))
            continue
        good[contract.bank_code] = contract
    return good, problems
