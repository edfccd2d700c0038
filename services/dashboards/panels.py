"""Shared building blocks of the dashboards: datasource, queries, panels, variables, layout.

Built on Grafana's own `grafana-foundation-sdk` (typed builders generated from Grafana's dashboard
schema), so a field that Grafana renamed or removed fails here at generation time, not in a browser.
Every dashboard goes through `render()`, which assigns panel ids deterministically and serialises
with sorted keys, so the committed JSON is stable and a diff shows only real changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from grafana_foundation_sdk.builders import bargauge, heatmap, piechart, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models import piechart as pie_model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE_UID = "newnormal-prometheus"
DATASOURCE_NAME = "Prometheus · New Normal"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
FOLDER_UID = "newnormal"
FOLDER_TITLE = "ระบบติดตามวิถีใหม่ · New Normal monitor"
TIMEZONE = "Asia/Bangkok"
# Thai government fiscal year starts 1 October: Grafana counts months from 0, so October is 9.
FISCAL_YEAR_START_MONTH = 9
TAGS = ["newnormal"]

GREEN, AMBER, RED, BLUE, GREY = "green", "orange", "red", "blue", "text"


def query(expr: str, legend: str = "__auto", *, instant: bool = False, table_format: bool = False,
          ref: str = "A") -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    if instant:
        q = q.instant()
    else:
        q = q.range()
    if table_format:
        q = q.format(PromQueryFormat.TABLE)
    return q


def _targets(builder, exprs: Sequence[prometheus.Dataquery]):
    for i, target in enumerate(exprs):
        builder = builder.with_target(target.ref_id(chr(ord("A") + i)))
    return builder.datasource(DATASOURCE)


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=v, color=c) for v, c in steps])


def _size(builder, w: int, h: int):
    return builder.grid_pos(model.GridPos(h=h, w=w, x=0, y=0))


def stat_panel(title: str, targets: Sequence[prometheus.Dataquery], *, unit: str = "short", w: int = 6, h: int = 5,
               steps: Iterable[tuple[float | None, str]] = ((None, BLUE),), mappings: list | None = None,
               description: str = "", decimals: int | None = None) -> stat.Panel:
    p = stat.Panel().title(title).description(description).unit(unit).thresholds(thresholds(*steps)) \
        .color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.NONE) \
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)).no_value("ไม่มีข้อมูล · no data")
    if mappings:
        p = p.mappings(mappings)
    if decimals is not None:
        p = p.decimals(decimals)
    return _size(_targets(p, targets), w, h)


def timeseries_panel(title: str, targets: Sequence[prometheus.Dataquery], *, unit: str = "short", w: int = 12, h: int = 8,
                     stacked: bool = False, bars: bool = False, description: str = "",
                     min_val: float | None = None, max_val: float | None = None) -> timeseries.Panel:
    p = timeseries.Panel().title(title).description(description).unit(unit).line_width(1).fill_opacity(15) \
        .legend(cb.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE).placement(common.LegendPlacement.BOTTOM)
                .show_legend(True).calcs(["lastNotNull", "max"])) \
        .tooltip(cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
    if stacked:
        p = p.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    if bars:
        p = p.draw_style(common.GraphDrawStyle.BARS).fill_opacity(70)
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    return _size(_targets(p, targets), w, h)


def table_panel(title: str, targets: Sequence[prometheus.Dataquery], *, unit: str = "short", w: int = 12, h: int = 8,
                rename: dict[str, str] | None = None, exclude: Sequence[str] = ("Time",), sort_by: str | None = None,
                description: str = "", steps: Iterable[tuple[float | None, str]] | None = None) -> table.Panel:
    p = table.Panel().title(title).description(description).unit(unit).no_value("ไม่มีรายการ · none")
    if len(targets) > 1:
        p = p.with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
    p = p.with_transformation(model.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {name: True for name in exclude}, "renameByName": rename or {}}))
    if sort_by:
        p = p.sort_by([cb.TableSortByFieldState().display_name(sort_by).desc(True)])
    if steps:
        p = p.thresholds(thresholds(*steps)).cell_options(common.TableColoredBackgroundCellOptions())
    return _size(_targets(p, targets), w, h)


def bargauge_panel(title: str, targets: Sequence[prometheus.Dataquery], *, unit: str = "percentunit", w: int = 12,
                   h: int = 8, min_val: float = 0, max_val: float | None = 1,
                   steps: Iterable[tuple[float | None, str]] = ((None, RED), (0.6, AMBER), (0.8, GREEN)),
                   description: str = "") -> bargauge.Panel:
    p = bargauge.Panel().title(title).description(description).unit(unit).min(min_val).thresholds(thresholds(*steps)) \
        .display_mode(common.BarGaugeDisplayMode.GRADIENT).orientation(common.VizOrientation.HORIZONTAL) \
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    if max_val is not None:
        p = p.max(max_val)
    return _size(_targets(p, targets), w, h)


def pie_panel(title: str, targets: Sequence[prometheus.Dataquery], *, w: int = 8, h: int = 8, unit: str = "short",
              description: str = "") -> piechart.Panel:
    p = piechart.Panel().title(title).description(description).unit(unit).pie_type(pie_model.PieChartType.DONUT) \
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)) \
        .legend(piechart.PieChartLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.RIGHT).show_legend(True).values([pie_model.PieChartLegendValues.VALUE]))
    return _size(_targets(p, targets), w, h)


def matrix_panel(title: str, targets: Sequence[prometheus.Dataquery], *, row_field: str, column_field: str,
                 unit: str = "percentunit", w: int = 24, h: int = 10, min_val: float = 0, max_val: float = 1,
                 steps: Iterable[tuple[float | None, str]] = ((None, RED), (0.6, AMBER), (0.8, GREEN)),
                 description: str = "") -> table.Panel:
    """A categorical heat map (rows × columns of coloured cells, e.g. agency × competency): a table whose
    cells are coloured by value. Grafana's heatmap panel buckets values over time, which is not what a
    matrix of two labels is; the "grouping to matrix" transformation pivots the instant query."""
    p = table.Panel().title(title).description(description).unit(unit).min(min_val).max(max_val) \
        .thresholds(thresholds(*steps)).cell_options(common.TableColoredBackgroundCellOptions()).no_value("–")
    p = p.with_transformation(model.DataTransformerConfig(id_val="groupingToMatrix", options={
        "columnField": column_field, "rowField": row_field, "valueField": "Value", "emptyValue": "null"}))
    return _size(_targets(p, targets), w, h)


def histogram_heatmap_panel(title: str, targets: Sequence[prometheus.Dataquery], *, unit: str = "s", w: int = 12,
                            h: int = 8, description: str = "") -> heatmap.Panel:
    p = heatmap.Panel().title(title).description(description).unit(unit).calculate(False) \
        .color(heatmap.HeatmapColorOptions().mode(heatmap_model.HeatmapColorMode.SCHEME).scheme("Oranges").steps(64)) \
        .y_axis(heatmap.YAxisConfig().unit(unit))
    return _size(_targets(p, [t.format(PromQueryFormat.HEATMAP) for t in targets]), w, h)


def row(title: str) -> dash.Row:
    return dash.Row(title)


# --- variables -------------------------------------------------------------------------------

def query_variable(name: str, label: str, metric: str, label_name: str, *, multi: bool = True,
                   include_all: bool = True) -> dash.QueryVariable:
    v = dash.QueryVariable(name).label(label).datasource(DATASOURCE) \
        .query({"query": f"label_values({metric}, {label_name})", "refId": "PrometheusVariableQueryEditor-VariableQuery",
                "qryType": 1}) \
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC) \
        .multi(multi).include_all(include_all)
    if include_all:
        v = v.all_value(".*").current(model.VariableOption(selected=True, text="All", value="$__all"))
    return v


def fiscal_year_variable() -> dash.QueryVariable:
    """The fiscal years present in the training figures, newest first, so the default is the current one.

    A query variable rather than a fixed list: a committed list would go stale every 1 October."""
    return dash.QueryVariable("fiscal_year").label("ปีงบประมาณ · Fiscal year (พ.ศ.)").datasource(DATASOURCE) \
        .query({"query": "label_values(newnormal_training_target_headcount, fiscal_year)",
                "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1}) \
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.NUMERICAL_DESC) \
        .multi(False).include_all(False)


def agency_variable(metric: str = "newnormal_training_target_headcount") -> dash.QueryVariable:
    return query_variable("agency", "หน่วยงาน · Agency", metric, "agency")


def workstream_variable() -> dash.QueryVariable:
    return query_variable("workstream", "แผนงาน · Workstream", "newnormal_roadmap_milestones", "workstream")


def competency_variable() -> dash.QueryVariable:
    return query_variable("competency", "สมรรถนะ · Competency", "newnormal_training_target_headcount", "competency")


def age_group_variable() -> dash.QueryVariable:
    return query_variable("age_group", "กลุ่มอายุ · Age group", "newnormal_feedback_responses_total", "age_group")


def channel_variable() -> dash.QueryVariable:
    return query_variable("channel", "ช่องทาง · Channel", "newnormal_feedback_responses_total", "channel")


def job_variable() -> dash.QueryVariable:
    return query_variable("job", "บริการ · Service", "newnormal_service_info", "job")


# --- dashboard -------------------------------------------------------------------------------

FISCAL_QUICK_RANGES = (
    ("ปีงบประมาณนี้ · This fiscal year", "now/fy", "now/fy"),
    ("ปีงบประมาณนี้ถึงปัจจุบัน · Fiscal year so far", "now/fy", "now"),
    ("ปีงบประมาณก่อน · Previous fiscal year", "now-1y/fy", "now-1y/fy"),
    ("ไตรมาสนี้ · This fiscal quarter", "now/fQ", "now/fQ"),
    ("7 วันล่าสุด · Last 7 days", "now-7d", "now"),
    ("24 ชั่วโมงล่าสุด · Last 24 hours", "now-24h", "now"),
    ("1 ชั่วโมงล่าสุด · Last hour", "now-1h", "now"),
)


def new_dashboard(uid: str, title: str, description: str, *, time_from: str = "now/fy", time_to: str = "now",
                  refresh: str = "1m") -> dash.Dashboard:
    picker = dash.TimePicker().refresh_intervals(["30s", "1m", "5m", "15m", "1h"]).quick_ranges(
        [dash.TimeOption().display(d).from_val(f).to(t) for d, f, t in FISCAL_QUICK_RANGES])
    links = [dash.DashboardLink("แดชบอร์ดอื่น · Other dashboards").type(model.DashboardLinkType.DASHBOARDS)
             .tags(TAGS).as_dropdown(True).include_vars(False).keep_time(True)]
    return dash.Dashboard(title).uid(uid).description(description).tags(TAGS).timezone(TIMEZONE) \
        .fiscal_year_start_month(FISCAL_YEAR_START_MONTH).week_start("monday").time(time_from, time_to) \
        .refresh(refresh).timepicker(picker).tooltip(model.DashboardCursorSync.CROSSHAIR).links(links) \
        .editable()


BUILTIN_ANNOTATION = {
    "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
}


def _layout(panels: list[dict]) -> None:
    """Flow the panels left to right in 24 columns, wrapping when a panel does not fit; a row takes a
    full line. Positions are computed here rather than by hand so they can never overlap."""
    x = y = line_h = 0
    for panel in panels:
        pos = panel["gridPos"]
        if panel["type"] == "row":
            y += line_h
            panel["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            x, y, line_h = 0, y + 1, 0
            continue
        w, h = min(pos["w"], 24), pos["h"]
        if x + w > 24:
            x, y, line_h = 0, y + line_h, 0
        panel["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x += w
        line_h = max(line_h, h)


def render(board: dash.Dashboard) -> dict:
    """The dashboard as Grafana JSON: laid out, panel ids 1..n in layout order, stable key order."""
    data = json.loads(JSONEncoder(sort_keys=True).encode(board.build()))
    panels = data.get("panels", [])
    _layout(panels)
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    data["annotations"] = {"list": [BUILTIN_ANNOTATION]}
    data["id"] = None
    data["version"] = 1
    return data


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def db_increase(metric: str, window: str, by: str, keep: str, selector: str = "") -> str:
    """Increase of a counter that the service computes from the database (e.g. feedback totals).

    Every replica reports the same value, so take the max across replicas per original label set
    first (`keep`), then sum to the wanted grouping (`by`, may be empty)."""
    inner = f"max by ({keep}) (increase({metric}{{{selector}}}[{window}]))"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def share_with_difficulty(window: str, by: str, selector: str = "") -> str:
    """Share of answers reporting some or severe technology difficulty (0, not absent, when none did)."""
    keep = "channel, age_group, level"
    metric = "newnormal_feedback_tech_difficulty_total"
    hard_sel = ", ".join(s for s in (selector, 'level!="none"') if s)
    total = db_increase(metric, window, by, keep, selector)
    return f"({db_increase(metric, window, by, keep, hard_sel)} or {total} * 0) / ({total} > 0)"


def mean_satisfaction(window: str, by: str, selector: str = "") -> str:
    return mean_score("satisfaction", window, by, selector)


def mean_score(item: str, window: str, by: str, selector: str = "") -> str:
    """Mean of a 1-5 feedback histogram (satisfaction, ease, trust): sum over count of the answers given."""
    keep = "channel, age_group"
    return (f"{db_increase(f'newnormal_feedback_{item}_sum', window, by, keep, selector)}"
            f" / ({db_increase(f'newnormal_feedback_{item}_count', window, by, keep, selector)} > 0)")


def quantile(q: float, metric: str, by: str = "", selector: str = "", window: str = "$__rate_interval") -> str:
    """histogram_quantile over a window, only where there were observations: a window without any gives
    NaN, which Grafana draws as nothing; say so by returning no point instead."""
    group = f"{by}, le" if by else "le"
    observed = f"sum by ({by}) (rate({metric}_count{{{selector}}}[{window}]))" if by else \
        f"sum(rate({metric}_count{{{selector}}}[{window}]))"
    return (f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[{window}])))"
            f" and on ({by}) {observed} > 0")
