"""The scaffolding of the offline HTML pages: style, escaping, tables, embedded figures, the page."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path

import plotly.graph_objects as go

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; color: #222;
       background: #f6f7f9; }
main { max-width: 1320px; margin: 0 auto; padding: 16px 28px 48px; }
h1 { margin: 8px 0 4px; font-size: 26px; }
h2 { margin: 36px 0 6px; font-size: 20px; border-bottom: 2px solid #d9dde3; padding-bottom: 4px; }
h3 { margin: 22px 0 4px; font-size: 17px; }
p.note { color: #555; margin: 4px 0 8px; font-size: 14px; max-width: 1100px; }
.meta { color: #555; font-size: 14px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 10px 16px;
        min-width: 150px; }
.card b { display: block; font-size: 24px; }
.card span { color: #555; font-size: 13px; }
table { border-collapse: collapse; background: #fff; font-size: 14px; margin: 6px 0 10px; }
th, td { border: 1px solid #dde1e6; padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: #eef0f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.summary { max-width: 560px; font-size: 13px; }
.figure { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 6px; margin: 8px 0; }
ol.ideal { display: flex; flex-wrap: wrap; gap: 6px; list-style: none; padding: 0; margin: 6px 0; }
ol.ideal li { background: #e3f2f0; border: 1px solid #9fd3cc; border-radius: 14px; padding: 3px 10px;
              font-size: 13px; }
ol.ideal li.optional { background: #fff; border-style: dashed; }
ol.ideal li.goal { border-width: 2px; border-color: #2a9d8f; font-weight: 600; }
.legend span { display: inline-block; margin-right: 14px; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 4px;
          vertical-align: -1px; }
"""


def esc(value: object) -> str:
    """Any value as escaped HTML text (None as empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def html_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """An escaped HTML table; numbers are right-aligned."""
    head = "".join(f"<th>{esc(column)}</th>" for column in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{esc(value)}</td>'
            if isinstance(value, int | float)
            else f"<td>{esc(value)}</td>"
            for value in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def empty_figure(message: str, title: str, height: int = 260) -> go.Figure:
    """A blank figure that says why it is blank (no data for this chart)."""
    figure = go.Figure()
    figure.add_annotation(text=esc(message), showarrow=False, font={"size": 16, "color": "#777"})
    figure.update_layout(
        title=title,
        height=height,
        xaxis={"visible": False},
        yaxis={"visible": False},
        template="plotly_white",
    )
    return figure


def bar_rows_layout(
    figure: go.Figure,
    title: str,
    rows: int,
    x_title: str,
    *,
    barmode: str = "stack",
    row_height: int = 26,
    top: int = 80,
) -> go.Figure:
    """Lay out a horizontal bar chart of one row per label: it grows with its rows, labels are never
    cut (automargin), the legend sits above it on the right."""
    figure.update_layout(
        title=title, barmode=barmode, height=160 + row_height * rows, template="plotly_white",
        xaxis={"title": x_title}, yaxis={"automargin": True},
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
        margin={"l": 10, "r": 10, "t": top, "b": 50},
    )  # fmt: skip
    return figure


class FigureEmbedder:
    """Renders figures as HTML fragments, embedding plotly.js inline with the first one only."""

    def __init__(self) -> None:
        self.embedded = False

    def __call__(self, figure: go.Figure) -> str:
        fragment = figure.to_html(
            full_html=False, include_plotlyjs=not self.embedded, config=PLOTLY_CONFIG, default_width="100%"
        )
        self.embedded = True
        return f"<div class='figure'>{fragment}</div>"


def page_html(title: str, parts: Iterable[str], extra_css: str = "") -> str:
    """One self-contained HTML page: the title (escaped here), the shared style and the parts in order."""
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{CSS}{extra_css}</style></head>"
        f"<body><main>\n{body}\n</main></body></html>\n"
    )


def write_page(path: Path, page: str) -> None:
    """Write a page as one offline file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
