"""What a matplotlib figure shows, as E2B's `e2b/chart` dict (its `Result.chart`).

aiva's own extractor for Debian's matplotlib 3.6 and numpy 1.24, with plain dicts: it
follows the algorithm of E2B's `e2b_charts` (which needs pydantic 2 and newer
matplotlib) and gives the same field names and values. Loaded by aiva_startup.py the
first time a figure is displayed, so matplotlib is already imported then.
"""

import datetime
import math
import re
from decimal import Decimal, localcontext

import matplotlib.dates
import numpy
from matplotlib.collections import PathCollection
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch, Rectangle, Wedge
from matplotlib.text import Text

# A unit in a label: "Time (s)" -> "s", "Amplitude [Hz]" -> "Hz".
_UNIT = re.compile(r"\s\((.*?)\)|\[(.*?)\]")


def chart_figure_to_dict(figure):
    """The figure's chart, or None when no axes holds data (then there is no chart)."""
    axes = figure.get_axes()
    if not any(ax.has_data() for ax in axes):
        return None
    if len(axes) > 1:
        return {
            "type": "superchart",
            "title": figure._suptitle.get_text() if figure._suptitle else "",
            "elements": [chart_from_axes(ax) for ax in axes],
        }
    return chart_from_axes(axes[0])


def chart_from_axes(ax):
    kind = _chart_type(ax)
    if kind in ("line", "scatter"):
        return _point_chart(ax, kind)
    if kind == "bar":
        return _bar_chart(ax)
    if kind == "box_and_whisker":
        return _box_chart(ax)
    if kind == "pie":
        return _pie_chart(ax)
    return {"type": "unknown", "title": _or_none(ax.get_title()), "elements": []}


def _chart_type(ax):
    objects = [o for o in ax._children if not isinstance(o, Text)]
    if all(isinstance(o, Line2D) for o in objects):
        return "line"
    if all(isinstance(o, (PathPatch, Line2D)) for o in objects):
        return "box_and_whisker"
    objects = [o for o in objects if not (isinstance(o, Line2D) and _is_grid_line(o))]
    for kind, cls in (("scatter", PathCollection), ("pie", Wedge), ("bar", Rectangle)):
        if all(isinstance(o, cls) for o in objects):
            return kind
    return "unknown"


def _is_grid_line(line):
    x, y = line.get_xdata(), line.get_ydata()
    return len(x) == 2 and len(y) == 2 and (x[0] == x[1] or y[0] == y[1])


def _or_none(text):
    return text if text else None


def _unit(label):
    match = _UNIT.search(label) if label else None
    return (match.group(1) or match.group(2)) if match else None


def _chart_2d(ax, kind):
    x_label, y_label = _or_none(ax.get_xlabel()), _or_none(ax.get_ylabel())
    return {
        "type": kind,
        "title": _or_none(ax.get_title()),
        "x_label": x_label,
        "y_label": y_label,
        "x_unit": _unit(x_label),
        "y_unit": _unit(y_label),
        "elements": [],
    }


def _swap_axes(chart):
    chart["x_label"], chart["y_label"] = chart["y_label"], chart["x_label"]
    chart["x_unit"], chart["y_unit"] = chart["y_unit"], chart["x_unit"]


def _number(value):
    """A JSON number (numpy scalars and Decimals too); NaN and infinities are null."""
    value = float(value)
    return value if math.isfinite(value) else None


def _point_value(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, numpy.datetime64):
        return str(value.astype("datetime64[s]"))
    if isinstance(value, (bool, numpy.bool_)):
        return bool(value)
    if isinstance(value, (int, float, numpy.number)):
        return _number(value)
    return str(value)


def _is_date_axis(axis):
    return isinstance(axis.converter, matplotlib.dates._SwitchableDateConverter)


def _ticks(axis, ticks):
    if _is_date_axis(axis):
        return [matplotlib.dates.num2date(t).isoformat() for t in ticks]
    return [_point_value(t) for t in ticks]


def _scale(axis, scale, ticks, labels):
    if _is_date_axis(axis):
        return "datetime"
    if scale != "linear":
        return scale
    # Ticks 0..n-1 whose labels are not those numbers: the axis shows categories.
    for i, (tick, label) in enumerate(zip(ticks, labels)):
        if not (isinstance(tick, float) and tick == i and label != str(i)):
            return "linear"
    return "categorical"


def _point_chart(ax, kind):
    chart = _chart_2d(ax, kind)
    for name, axis, scale in (("x", ax.xaxis, ax.get_xscale()), ("y", ax.yaxis, ax.get_yscale())):
        labels = [t.get_text() for t in axis.get_ticklabels()]
        ticks = _ticks(axis, axis.get_ticklocs())
        chart[f"{name}_ticks"] = ticks
        chart[f"{name}_tick_labels"] = labels
        chart[f"{name}_scale"] = _scale(axis, scale, ticks, labels)
    if kind == "line":
        for line in ax.get_lines():
            if _is_grid_line(line):
                continue
            label = str(line.get_label())
            if label.startswith("_child"):
                label = f"Line {int(label[6:])}"
            points = [[_point_value(x), _point_value(y)] for x, y in zip(line.get_xdata(), line.get_ydata())]
            chart["elements"].append({"label": label, "points": points})
    else:
        for collection in ax.collections:
            points = [[_point_value(x), _point_value(y)] for x, y in collection.get_offsets()]
            chart["elements"].append({"label": str(collection.get_label()), "points": points})
    return chart


def _bar_chart(ax):
    chart = _chart_2d(ax, "bar")
    for container in ax.containers:
        group = str(container.get_label())
        if group.startswith("_container"):
            group = f"Group {int(group[10:])}"
        rects = list(container)
        heights = [r.get_height() for r in rects]
        if heights and all(h == heights[0] for h in heights):
            # Bars of one height are taken as horizontal ones (barh): values are widths.
            _swap_axes(chart)
            labels = [t.get_text() for t in ax.get_yticklabels()]
            values = [r.get_width() for r in rects]
        else:
            labels = [t.get_text() for t in ax.get_xticklabels()]
            values = heights
        for label, value in zip(labels, values):
            chart["elements"].append({"label": label, "group": group, "value": _number(value)})
    return chart


def _round8(value):
    """The value to 8 significant digits (as E2B rounds), so that float noise cancels out."""
    number = Decimal(str(value))
    with localcontext() as ctx:
        ctx.prec = max(1, 8 - number.adjusted())
        return +number


def _box_chart(ax):
    chart = _chart_2d(ax, "box_and_whisker")
    boxes = []
    for patch in ax.patches:
        vertices = patch.get_path().vertices
        xs = [_round8(x) for x in vertices[:, 0]]
        ys = [_round8(y) for y in vertices[:, 1]]
        x, y = min(xs), min(ys)
        boxes.append({"x": x, "y": y, "width": max(xs) - x, "height": max(ys) - y, "outliers": []})
    # Boxes of one height are laid out horizontally (vert=False): swap the axes.
    vertical = bool(boxes) and all(b["height"] == boxes[0]["height"] for b in boxes)
    if vertical:
        _swap_axes(chart)
        for b in boxes:
            b["x"], b["y"], b["width"], b["height"] = b["y"], b["x"], b["height"], b["width"]
    labels = [t.get_text() for t in (ax.get_yticklabels() if vertical else ax.get_xticklabels())]
    boxes = boxes[: len(labels)]
    for label, b in zip(labels, boxes):
        b["label"] = label

    def box_spanning(lo, hi):
        return next((b for b in boxes if b["x"] <= lo <= hi <= b["x"] + b["width"]), None)

    for line in ax.lines:
        xs = [_round8(v) for v in line.get_xdata()]
        ys = [_round8(v) for v in line.get_ydata()]
        if vertical:
            xs, ys = ys, xs
        if len(xs) == 1 and len(ys) == 1:
            box = box_spanning(xs[0], xs[0])
            if box is not None:
                box["outliers"].append(ys[0])
            continue
        if len(xs) != 2 or len(ys) != 2:
            continue
        box = box_spanning(xs[0], xs[1])
        if box is None:
            continue
        if ys[0] == ys[1] and box["y"] <= ys[0] <= box["y"] + box["height"]:
            # A whisker of length 0 (at the box's edge) also looks like this; the median
            # line comes after the whiskers, so it wins.
            box["median"] = ys[0]
        elif max(ys) == box["y"]:
            box["whisker_lower"] = min(ys)
        elif min(ys) == box["y"] + box["height"]:
            box["whisker_upper"] = max(ys)

    def num(value):
        return None if value is None else _number(value)

    chart["elements"] = [
        {
            "label": b["label"],
            # No whisker found: it has length 0, so the extreme is the quartile.
            "min": num(b.get("whisker_lower", b["y"])),
            "first_quartile": num(b["y"]),
            "median": num(b.get("median")),
            "third_quartile": num(b["y"] + b["height"]),
            "max": num(b.get("whisker_upper", b["y"] + b["height"])),
            "outliers": [num(o) for o in b["outliers"]],
        }
        for b in boxes
    ]
    return chart


def _pie_chart(ax):
    elements = []
    for wedge in ax.patches:
        angle = abs(_round8(Decimal(float(wedge.theta2)) - Decimal(float(wedge.theta1))))
        elements.append({"label": str(wedge.get_label()), "angle": _number(angle), "radius": _number(wedge.r)})
    return {"type": "pie", "title": _or_none(ax.get_title()), "elements": elements}
