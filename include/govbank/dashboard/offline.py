"""Great Expectations Data Docs, made to work without the internet.

GX pages load Bootstrap, jQuery, bootstrap-table and Font Awesome from CDNs; offline
(a district network, CI) they render unstyled and the index page's tables, drawn by
bootstrap-table, stay empty. :func:`offline_html` rewrites a page as it is served:
each CDN file we vendor (byte-identical, so the pages' ``integrity`` hashes still hold;
versions in ``static/vendor/README.md``) points to our copy, the icon font becomes a
small stylesheet of Unicode glyphs, and what a validation page does not need (Vega
charts, the dark theme, GX's web logo) is dropped or replaced by the
site's own files. Pages on disk stay as GX wrote them.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html import unescape
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"
ICONS_CSS = "datadocs-offline.css"

# CDN URL -> vendored file name (None: not needed offline, dropped)
CDN_FILES: dict[str, str | None] = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": ICONS_CSS,
    # the index page's run-time filter needs the date picker, or its table stays empty
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": None,
    "https://cdn.jsdelivr.net/npm/vega@5": None,
    "https://cdn.jsdelivr.net/npm/vega-lite@5": None,
    "https://cdn.jsdelivr.net/npm/vega-embed@6": None,
}

_SCRIPT = re.compile(r'<script\b[^>]*?\bsrc="(https?://[^"]+)"[^>]*>\s*</script>', re.I)
_LINK = re.compile(r'<link\b[^>]*?\bhref="(https?://[^"]+)"[^>]*?/?>', re.I)
_GX_LOGO = re.compile(r'"https?://great-expectations-web-assets\.[^"]*/logo-long\.png[^"]*"')
_CSS_URL = re.compile(r"url\((['\"]?)https?://[^)'\"]+\1\)")
_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.I | re.S)
_HANDLER = re.compile(r"""<[^>]*?\son[a-z]+\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)


def offline_html(html: str, page_path: str, assets_url: str) -> str:
    """Rewrite one Data Docs page so that it loads nothing from the internet.

    ``page_path`` is the page's path inside the site (``validations/.../x.html``), so
    links to the site's own ``static/`` folder can be made relative; ``assets_url`` is
    where the vendored files are served, relative to the page or absolute.
    """
    assets = assets_url.rstrip("/") + "/"
    site_root = "../" * page_path.count("/")

    def script(m: re.Match[str]) -> str:
        local = CDN_FILES.get(m.group(1))
        return m.group(0).replace(m.group(1), assets + local) if local else ""

    def link(m: re.Match[str]) -> str:
        tag, url = m.group(0), m.group(1)
        if "stylesheet" not in tag and not url.endswith(".css"):
            return tag  # not a resource load (none in GX pages today)
        local = CDN_FILES.get(url)
        return tag.replace(url, assets + local) if local else ""

    html = _SCRIPT.sub(script, html)
    html = _LINK.sub(link, html)
    html = _GX_LOGO.sub(f'"{site_root}static/images/logo-long.png"', html)
    return _CSS_URL.sub("none", html)


def asset_path(name: str) -> Path | None:
    """The vendored file or our icon stylesheet called ``name``, if it is one of ours."""
    if name == ICONS_CSS:
        return STATIC_DIR / ICONS_CSS
    if name in {v for v in CDN_FILES.values() if v}:
        return VENDOR_DIR / name
    return None


def data_docs_csp(html: str) -> str:
    """The Content-Security-Policy of one served Data Docs page.

    GX writes its pages with inline scripts (the tables' set-up), a few ``onclick``
    handlers (the filter buttons) and inline styles; we serve them as GX wrote them.
    Scripts: our own files plus exactly the inline scripts and handlers of this page, by
    hash ('unsafe-hashes' lets a hash match a handler), so nothing injected into a page
    runs. Styles: 'unsafe-inline', since GX and bootstrap-table put ``style`` attributes
    everywhere and a style cannot run code. Nothing is loaded from outside this site.
    """

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    scripts = {sha(body) for body in _INLINE_SCRIPT.findall(html)}
    # the browser hashes a handler's value as parsed: entities decoded
    handlers = {sha(unescape(d or s)) for d, s in _HANDLER.findall(html)}
    sources = " ".join(["'self'", *(["'unsafe-hashes'"] if handlers else []), *sorted(scripts | handlers)])
    return (
        f"default-src 'none'; script-src {sources}; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'self'"
    )
