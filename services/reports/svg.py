"""Charts as SVG strings made on the server (pure; no JavaScript needed to read them).

Every chart carries role="img", a <title> and a <desc> that says the figures in words (the text alternative),
and data-* attributes with the read APIs' own figures so tests and tools can find them. Colours pass WCAG 2.1
AA: text on a fill is dark on the light steps and white on the dark ones (contrast >= 4.5:1), and no meaning is
carried by colour alone (suppressed cells say so, gaps carry a mark).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from itertools import count

from services.reports import domain

_ids = count(1)

# Light to dark; text colour per step chosen for >= 4.5:1 contrast.
BLUES = (("#eff6ff", "#111827"), ("#bfdbfe", "#111827"), ("#60a5fa", "#111827"), ("#1d4ed8", "#ffffff"),
         ("#1e3a8a", "#ffffff"))
ORANGES = (("#fff7ed", "#111827"), ("#fed7aa", "#111827"), ("#fb923c", "#111827"), ("#c2410c", "#ffffff"),
           ("#7c2d12", "#ffffff"))
SUPPRESSED_FILL, SUPPRESSED_TEXT = "#e5e7eb", "#374151"
GAP_STROKE = "#b91c1c"


def fmt(value: float | None, kind: str, lang: str = "th") -> str:
    """A figure as people read it: shares as percentages with one decimal, means with two."""
    if value is None:
        return "–"
    if kind in ("share", "ratio"):
        return f"{value * 100:.1f}%"
    if kind == "mean":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def _step(value: float, kind: str) -> int:
    """Five equal bands: means over 1..5, shares over 0..1."""
    x = (value - 1) / 4 if kind == "mean" else value
    return max(0, min(4, int(x * 5)))


def heatmap(hm: domain.HeatMap, lang: str) -> str:
    """Channels (rows) x age groups (columns); a gap cell has a red frame and a ▼ mark. Channel names are the
    long ones, so they get the rows; the chart keeps 16 px text and scrolls sideways on a phone."""
    col_w, row_h, left, top = 100, 44, 180, 40
    width, height = left + col_w * len(hm.ages), top + row_h * len(hm.channels) + 4
    palette = BLUES if hm.higher_is_better else ORANGES
    title = hm.title[0] if lang == "th" else hm.title[1]
    uid = next(_ids)
    parts = [f'<svg class="heatmap" viewBox="0 0 {width} {height}" role="img" aria-labelledby="hm{uid}t hm{uid}d" '
             f'data-measure="{escape(hm.measure)}" xmlns="http://www.w3.org/2000/svg" font-size="16">',
             f'<title id="hm{uid}t">{escape(title)}</title>']
    words = []
    for ch in hm.channels:
        for age in hm.ages:
            cell = hm.cells.get((age, ch))
            if cell is None:
                continue
            name = f"{domain.label(domain.CHANNEL_LABELS, ch, lang)}, {domain.label(domain.AGE_LABELS, age, lang)}"
            if cell.suppressed:
                words.append(f"{name}: {'ปกปิด' if lang == 'th' else 'hidden'}")
            elif cell.value is not None:
                words.append(f"{name}: {fmt(cell.value, hm.kind)}{' ▼' if cell.gap else ''}")
    parts.append(f'<desc id="hm{uid}d">{escape("; ".join(words) or ("ไม่มีข้อมูล" if lang == "th" else "no data"))}</desc>')
    for j, age in enumerate(hm.ages):
        x = left + j * col_w + col_w / 2
        parts.append(f'<text x="{x:.0f}" y="26" text-anchor="middle" fill="#111827">'
                     f'{escape(domain.label(domain.AGE_LABELS, age, lang))}</text>')
    for i, ch in enumerate(hm.channels):
        y = top + i * row_h
        parts.append(f'<text x="{left - 8}" y="{y + row_h / 2 + 6:.0f}" text-anchor="end" fill="#111827">'
                     f'{escape(domain.label(domain.CHANNEL_LABELS, ch, lang))}</text>')
        for j, age in enumerate(hm.ages):
            parts.append(_heat_cell(hm, hm.cells.get((age, ch)), age, ch, left + j * col_w, y, col_w, row_h, palette, lang))
    parts.append("</svg>")
    return "".join(parts)


def _heat_cell(hm: domain.HeatMap, cell: domain.HeatCell | None, age: str, ch: str, x: float, y: float, w: float,
               h: float, palette: tuple[tuple[str, str], ...], lang: str) -> str:
    attrs = f'data-cell="{escape(age)}|{escape(ch)}"'
    if cell is None:
        fill, ink, text = "#ffffff", "#374151", "·"
    elif cell.suppressed:
        fill, ink, text = SUPPRESSED_FILL, SUPPRESSED_TEXT, "ปกปิด" if lang == "th" else "hidden"
        attrs += ' data-suppressed="true"'
    elif cell.value is None:
        fill, ink, text = "#ffffff", "#374151", "–"
    else:
        fill, ink = palette[_step(cell.value, hm.kind)]
        text = fmt(cell.value, hm.kind) + (" ▼" if cell.gap else "")
        attrs += f' data-value="{cell.value}" data-responses="{cell.responses}"'
        if cell.gap:
            attrs += ' data-gap="true"'
    stroke = f'stroke="{GAP_STROKE}" stroke-width="4"' if cell and cell.gap else 'stroke="#ffffff" stroke-width="2"'
    inset = 2 if cell and cell.gap else 0
    return (f'<g {attrs}><rect x="{x + inset}" y="{y + inset}" width="{w - 2 * inset}" height="{h - 2 * inset}" '
            f'fill="{fill}" {stroke}/><text x="{x + w / 2:.0f}" y="{y + h / 2 + 6:.0f}" text-anchor="middle" '
            f'fill="{ink}">{escape(text)}</text></g>')


def progress_bar(ready: int, target: int, expected_ratio: float, lang: str, name: str) -> str:
    """Ready against target, with a mark where the linear path stands today."""
    ratio = min(1.0, ready / target) if target else 0.0
    uid = next(_ids)
    path = min(1.0, max(0.0, expected_ratio))
    words = (f"{name}: พร้อม {ready:,} จากเป้าหมาย {target:,} ({fmt(ready / target if target else None, 'share')}); "
             f"เส้นทางเชิงเส้น ณ วันนี้ {fmt(path, 'share')}" if lang == "th" else
             f"{name}: {ready:,} ready of {target:,} ({fmt(ready / target if target else None, 'share')}); "
             f"linear path today {fmt(path, 'share')}")
    return (f'<svg class="bar" viewBox="0 0 300 20" preserveAspectRatio="none" role="img" aria-labelledby="b{uid}" '
            f'xmlns="http://www.w3.org/2000/svg"><title id="b{uid}">{escape(words)}</title>'
            f'<rect x="0" y="2" width="300" height="16" fill="#e5e7eb"/>'
            f'<rect x="0" y="2" width="{300 * ratio:.1f}" height="16" fill="#1d4ed8"/>'
            f'<rect x="{max(0.0, 300 * path - 1.5):.1f}" y="0" width="3" height="20" fill="#111827"/></svg>')


def sparkline(values: Sequence[float | None], labels: Sequence[str], kind: str, lang: str, name: str) -> str:
    """A small line over the last quarters; missing quarters leave a gap (and say so in the text). Fewer than
    two known points draw nothing: a lone dot reads as a chart with no axis."""
    width, height, pad = 160, 40, 5
    uid = next(_ids)
    known = [v for v in values if v is not None]
    words = "; ".join(f"{lab}: {fmt(v, kind)}" for lab, v in zip(labels, values, strict=True))
    head = (f'<svg class="spark" viewBox="0 0 {width} {height}" role="img" aria-labelledby="s{uid}" '
            f'xmlns="http://www.w3.org/2000/svg"><title id="s{uid}">{escape(name)}: {escape(words)}</title>')
    if len(known) < 2:
        return ""
    lo, hi = min(known), max(known)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    n = max(1, len(values) - 1)
    points = [(pad + i * (width - 2 * pad) / n, height - pad - (v - lo) / (hi - lo) * (height - 2 * pad))
              for i, v in enumerate(values) if v is not None]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#1e3a8a"/>' for x, y in points)
    return head + f'<polyline points="{line}" fill="none" stroke="#1e3a8a" stroke-width="2"/>{dots}</svg>'
