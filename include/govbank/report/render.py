"""The report's wording: a Jinja2 template operators edit, filled with the figures.

The template is ``templates/half_year.md.j2`` in this package, or the file named by
``GOVBANK_REPORT_TEMPLATE``. Paragraphs are separated by blank lines; a first line
starting with ``# `` is the title. An unknown name in the template is an error, not an
empty string, so a typo never prints a report with a figure missing.
"""

from __future__ import annotations

import os
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Any

TEMPLATE_ENV = "GOVBANK_REPORT_TEMPLATE"
DEFAULT_TEMPLATE = "half_year.md.j2"
_YI = Decimal(100_000_000)
_WAN = Decimal(10_000)


def _trim(value: Decimal, places: str) -> str:
    """Rounded to ``places``, without trailing zeros: 10.40 -> 10.4, 12.00 -> 12."""
    text = format(value.quantize(Decimal(places), rounding=ROUND_HALF_UP), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def yi_yuan(yuan: Any) -> str:
    """An amount in 元 as the reports write it: 1187000000 -> 11.87亿元 (两位小数，去尾零)."""
    return _trim(Decimal(yuan) / _YI, "0.01") + "亿元"


def wan_yuan(yuan: Any) -> str:
    return _trim(Decimal(yuan) / _WAN, "0.01") + "万元"


def template_source(path: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """(name, text) of the template: ``path``, else ``$GOVBANK_REPORT_TEMPLATE``, else the packaged one."""
    chosen = path or os.environ.get(TEMPLATE_ENV)
    if chosen:
        p = Path(chosen)
        return str(p), p.read_text(encoding="utf-8")
    text = resources.files("govbank.report").joinpath("templates", DEFAULT_TEMPLATE).read_text(encoding="utf-8")
    return DEFAULT_TEMPLATE, text


def render_text(context: dict[str, Any], template: str | os.PathLike[str] | None = None) -> str:
    from jinja2 import Environment, StrictUndefined

    name, source = template_source(template)
    env = Environment(
        undefined=StrictUndefined, autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["yi"] = yi_yuan
    env.filters["wan"] = wan_yuan
    env.filters["cn_date"] = lambda d: f"{d.year}年{d.month}月{d.day}日"
    text = env.from_string(source).render(**context)
    paragraphs = [" ".join(p.split("\n")).strip() for p in text.split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p) + "\n"


def paragraphs(text: str) -> tuple[str | None, list[str]]:
    """(title, paragraphs) of a rendered report."""
    parts = [p for p in text.split("\n\n") if p.strip()]
    title = None
    if parts and parts[0].startswith("# "):
        title = parts.pop(0)[2:].strip()
    return title, [p.strip() for p in parts]
