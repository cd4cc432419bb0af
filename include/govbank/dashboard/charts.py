"""Hand-written SVG charts: no chart library, nothing loaded from the internet.

Each function returns one ``<svg>`` element as a string, every label escaped. Sizes are
in viewBox units; the page's CSS scales them to the card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from html import escape

from govbank.dashboard.data import Town
from govbank.dashboard.fmt import count_zh
from govbank.domain.datasets import OUTLET_TYPES

PALETTE = ("#1f6fb2", "#d9822b", "#2e9d5b", "#b8415a", "#7a5cc2", "#5a7d8c", "#c2a83e")
TYPE_COLOURS = dict(zip(OUTLET_TYPES, ("#c0392b", "#1f6fb2", "#2e9d5b", "#8c8c8c"), strict=True))
RECON_PARTS = (("matched", "已匹配", "#2e9d5b"), ("bank_only", "仅银行有", "#d9822b"), ("gov_only", "仅政务平台有", "#1f6fb2"))
KM_PER_DEGREE = 111.32


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _nice_step(top: float, ticks: int = 4) -> float:
    raw = max(top, 1) / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


def _hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Convex hull (monotone chain), counter-clockwise."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return pts

    def cross(o, a, b):  # type: ignore[no-untyped-def]
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def _place_labels(
    towns: Sequence[Town],
    pos: Sequence[tuple[float, float]],
    radius: Sequence[float],
    width: int,
    height: int,
) -> list[tuple[float, float, str]]:
    """Greedy label placement: above, below, right or left of each circle, whichever
    overlaps fewest circles and labels already placed (big towns choose first)."""
    char_w, text_h = 13.0, 13.0
    boxes: list[tuple[float, float, float, float]] = []
    circles = list(zip(pos, radius, strict=True))

    def clashes(box: tuple[float, float, float, float], own: int) -> int:
        x0, y0, x1, y1 = box
        n = 10 if x0 < 2 or x1 > width - 2 or y0 < 2 or y1 > height - 2 else 0
        for bx0, by0, bx1, by1 in boxes:
            n += x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1
        for j, ((cx, cy), r) in enumerate(circles):
            nx, ny = min(max(cx, x0), x1), min(max(cy, y0), y1)
            n += j != own and math.hypot(nx - cx, ny - cy) < r
        return n

    placed: dict[int, tuple[float, float, str]] = {}
    for i in sorted(range(len(towns)), key=lambda k: -towns[k].total):
        (x, y), r = pos[i], radius[i]
        w = char_w * len(towns[i].name)
        options = (
            (x, y - r - 4, "middle", (x - w / 2, y - r - 4 - text_h, x + w / 2, y - r - 2)),
            (x, y + r + text_h + 2, "middle", (x - w / 2, y + r + 2, x + w / 2, y + r + text_h + 4)),
            (x + r + 4, y + 4, "start", (x + r + 3, y - text_h / 2 - 1, x + r + 4 + w, y + text_h / 2 + 1)),
            (x - r - 4, y + 4, "end", (x - r - 4 - w, y - text_h / 2 - 1, x - r - 3, y + text_h / 2 + 1)),
        )
        choice = min(options, key=lambda o: clashes(o[3], i))  # first of the least crowded
        boxes.append(choice[3])
        placed[i] = choice[:3]
    return [placed[i] for i in range(len(towns))]


def town_map(towns: Sequence[Town], width: int = 640, height: int = 460) -> str:
    """Ouhai's towns at their centroids, each a circle whose area is its service points.

    There is no boundary data in the warehouse, so the district's outline is a schematic:
    the towns' convex hull, pushed outwards. A scale bar keeps distances honest.
    """
    placed = [t for t in towns if t.longitude is not None and t.latitude is not None]
    if not placed:
        return '<svg class="chart" viewBox="0 0 10 10" role="img"><title>无乡镇坐标</title></svg>'
    lat0 = sum(t.latitude for t in placed) / len(placed)  # type: ignore[misc]
    kx = math.cos(math.radians(lat0))
    xs = [t.longitude * kx for t in placed]  # type: ignore[operator]
    ys = [-t.latitude for t in placed]  # type: ignore[operator]
    pad = 70
    span = max(max(xs) - min(xs), 1e-6), max(max(ys) - min(ys), 1e-6)
    scale = min((width - 2 * pad) / span[0], (height - 2 * pad - 20) / span[1])
    off_x = (width - span[0] * scale) / 2
    off_y = (height - 20 - span[1] * scale) / 2

    def project(x: float, y: float) -> tuple[float, float]:
        return off_x + (x - min(xs)) * scale, off_y + (y - min(ys)) * scale

    pos = [project(x, y) for x, y in zip(xs, ys, strict=True)]
    cx = sum(p[0] for p in pos) / len(pos)
    cy = sum(p[1] for p in pos) / len(pos)
    outline = []
    for x, y in _hull(pos):
        d = math.hypot(x - cx, y - cy) or 1
        outline.append(f"{x + (x - cx) / d * 42:.1f},{y + (y - cy) / d * 42:.1f}")
    biggest = max((t.total for t in placed), default=0) or 1
    parts = [
        f'<svg class="chart map" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="瓯海区各街道（镇）服务点分布">',
        "<title>瓯海区各街道（镇）服务点分布（示意）</title>",
        f'<polygon points="{" ".join(outline)}" class="district" stroke-linejoin="round"/>',
    ]
    radius = [5 + 23 * math.sqrt(t.total / biggest) if t.total else 3.0 for t in placed]
    labels = _place_labels(placed, pos, radius, width, height)
    order = sorted(range(len(placed)), key=lambda i: -placed[i].total)  # small circles on top
    for i in order:
        t, (x, y), r = placed[i], pos[i], radius[i]
        detail = "，".join(f"{k}{v}" for k, v in t.by_type.items()) or "暂无服务点"
        parts.append(
            f'<g class="town" data-town="{_e(t.code)}" data-count="{t.total}">'
            f"<title>{_e(t.name)}：{t.total} 个服务点（{_e(detail)}）</title>"
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}"/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}" class="count">{t.total if t.total else ""}</text>'
            "</g>"
        )
    for i, (lx, ly, anchor) in enumerate(labels):
        parts.append(
            f'<text x="{lx:.1f}" y="{ly:.1f}" class="town-name" text-anchor="{anchor}">'
            f"{_e(placed[i].name)}</text>"
        )
    px_per_km = scale / KM_PER_DEGREE  # one unit is a degree of latitude (111.32 km)
    bar_km = 5
    bar = bar_km * px_per_km
    y0 = height - 18
    parts.append(
        f'<g class="scale"><line x1="20" y1="{y0}" x2="{20 + bar:.1f}" y2="{y0}"/>'
        f'<line x1="20" y1="{y0 - 4}" x2="20" y2="{y0 + 4}"/>'
        f'<line x1="{20 + bar:.1f}" y1="{y0 - 4}" x2="{20 + bar:.1f}" y2="{y0 + 4}"/>'
        f'<text x="{20 + bar / 2:.1f}" y="{y0 - 7}">{bar_km} 公里</text></g>'
        f'<g class="north"><text x="{width - 24}" y="26">北</text>'
        f'<path d="M{width - 24},32 l-6,14 l6,-4 l6,4 z"/></g>'
        "</svg>"
    )
    return "".join(parts)


def town_bars(towns: Sequence[Town], width: int = 640) -> str:
    """Per town, its service points stacked by type, largest first."""
    rows = sorted((t for t in towns), key=lambda t: (-t.total, t.code))
    row_h, left, right = 24, 96, 40
    height = len(rows) * row_h + 40
    top = max((t.total for t in rows), default=0) or 1
    unit = (width - left - right) / top
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {width} {height}" role="img" aria-label="各街道（镇）服务点数量">',
        "<title>各街道（镇）服务点数量（按类型）</title>",
    ]
    for i, t in enumerate(rows):
        y = 8 + i * row_h
        parts.append(f'<text x="{left - 8}" y="{y + 15}" class="label" text-anchor="end">{_e(t.name)}</text>')
        x = float(left)
        for kind in OUTLET_TYPES:
            n = t.by_type.get(kind, 0)
            if not n:
                continue
            w = n * unit
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 8}" '
                f'fill="{TYPE_COLOURS[kind]}"><title>{_e(t.name)} {_e(kind)}：{n}</title></rect>'
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}" class="value">{t.total}</text>')
    ly = height - 14
    lx = float(left)
    for kind in OUTLET_TYPES:
        parts.append(
            f'<rect x="{lx:.1f}" y="{ly - 10}" width="12" height="12" fill="{TYPE_COLOURS[kind]}"/>'
            f'<text x="{lx + 16:.1f}" y="{ly}" class="legend">{_e(kind)}</text>'
        )
        lx += 16 + 14 * len(kind) + 18
    parts.append("</svg>")
    return "".join(parts)


def trend_lines(
    series: Mapping[str, Mapping[str, int]],
    months: Sequence[str],
    names: Mapping[str, str],
    width: int = 640,
    height: int = 300,
) -> str:
    """Monthly e-licence records per bank, one line each."""
    if not months or not series:
        return '<svg class="chart" viewBox="0 0 10 10" role="img"><title>暂无业务数据</title></svg>'
    left, right, top_pad, bottom = 48, 16, 16, 64
    top = max(v for s in series.values() for v in s.values())
    step = _nice_step(top)
    y_max = step * math.ceil(top / step)
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    dx = plot_w / max(len(months) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * dx, top_pad + plot_h * (1 - v / y_max)

    parts = [
        f'<svg class="chart trend" viewBox="0 0 {width} {height}" role="img" aria-label="电子营业执照业务月度趋势">',
        "<title>各银行电子营业执照业务笔数（按月）</title>",
    ]
    v = 0.0
    while v <= y_max + 1e-9:
        _, y = xy(0, v)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{count_zh(Decimal(str(v)))}</text>'
        )
        v += step
    for i, month in enumerate(months):
        x, _ = xy(i, 0)
        label = f"{int(month[5:])}月" if month[5:] != "01" and i else f"{month[:4]}年{int(month[5:])}月"
        parts.append(f'<text x="{x:.1f}" y="{top_pad + plot_h + 18}" class="axis" text-anchor="middle">{_e(label)}</text>')
    cols = max(1, min(len(series), int(plot_w // 240)))
    for n, (bank, per_month) in enumerate(sorted(series.items())):
        colour = PALETTE[n % len(PALETTE)]
        pts = [(i, per_month.get(m, 0)) for i, m in enumerate(months)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, val) for i, val in pts))
        name = names.get(bank, bank)
        parts.append(
            f'<g class="series" data-bank="{_e(bank)}"><polyline points="{path}" fill="none" '
            f'stroke="{colour}" stroke-width="2.5"/>'
        )
        for i, val in pts:
            x, y = xy(i, val)
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                f"<title>{_e(name)} {_e(months[i])}：{val} 笔</title></circle>"
            )
        parts.append("</g>")
        lx = left + (n % cols) * (plot_w / cols)
        ly = height - 22 + (n // cols) * 18
        parts.append(
            f'<rect x="{lx:.1f}" y="{ly - 10}" width="14" height="4" fill="{colour}"/>'
            f'<text x="{lx + 20:.1f}" y="{ly - 4}" class="legend">{_e(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def reconciliation_bars(
    totals: Mapping[str, tuple[int, int, int]], names: Mapping[str, str], width: int = 640
) -> str:
    """Per bank: records matched between bank and government, and those on one side only."""
    row_h, left, right = 30, 170, 16
    height = len(totals) * row_h + 44
    top = max((sum(v) for v in totals.values()), default=0) or 1
    unit = (width - left - right) / top
    parts = [
        f'<svg class="chart recon" viewBox="0 0 {width} {height}" role="img" aria-label="业务核对">',
        "<title>银行报送与政务平台记录核对</title>",
    ]
    for i, (bank, values) in enumerate(sorted(totals.items())):
        y = 8 + i * row_h
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" class="label" text-anchor="end">{_e(names.get(bank, bank))}</text>'
        )
        x = float(left)
        for (key, label, colour), n in zip(RECON_PARTS, values, strict=True):
            w = n * unit
            if n:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 10}" fill="{colour}" '
                    f'data-part="{key}"><title>{_e(names.get(bank, bank))} {label}：{n}</title></rect>'
                )
                if w > 26:
                    parts.append(f'<text x="{x + w / 2:.1f}" y="{y + 14}" class="inbar" text-anchor="middle">{n}</text>')
            x += w
    ly, lx = height - 14, float(left)
    for _key, label, colour in RECON_PARTS:
        parts.append(
            f'<rect x="{lx:.1f}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{lx + 16:.1f}" y="{ly}" class="legend">{label}</text>'
        )
        lx += 16 + 14 * len(label) + 22
    parts.append("</svg>")
    return "".join(parts)
