"""The bench's chart: one row of panels per scenario, one panel per write mode, each row of the
table drawn over its steady window as a share of its ceiling, smoothed over the service's
window.

Why this shape: a rate between two samples half a second apart reads a burst (a client that
pushes into the limits is let through as each window frees its budget) as many times the
ceiling, which no client sustains; the records of the last whole window are what the limits
bound (``bench.ceiling``), so every point is a true share, and 100% is a line no client
crosses. Each line is named by its row (scenario/client/mode); the legend sits under its
panel, off the data. ``python -m bench.chart REPORT.json OUT.png`` draws a stored report's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib as mpl

from bench.figures import Result
from bench.machine import summary

mpl.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

MODE_ORDER: Final = ("single", "batch", "bulk", "calls")
STYLES: Final = {"baseline": ("--", 1.2), "probe": (":", 1.4), "peer": ("-.", 1.4)}
"""Line style and width by row kind; the product's rows (product, nightly, growth, lanes) are
solid and thicker."""
OURS_STYLE: Final = ("-", 2.2)
PANEL_W_IN: Final = 5.6
PANEL_H_IN: Final = 7.0


def trailing_rates(timeline: list[tuple[float, int]], window_s: float, start_s: float,
                   end_s: float) -> list[tuple[float, float]]:
    """Records/s over the window before each sample from ``start_s`` to ``end_s``: the
    records between the first sample at most one window earlier and this one, over a window
    (never more than one window's records, so never above what the limits allow a window)."""
    points = []
    for t_s, done in timeline:
        if start_s <= t_s <= end_s + 1e-9:
            earlier = next(d for s, d in timeline if s >= t_s - window_s - 1e-9)
            points.append((t_s, (done - earlier) / window_s))
    return points


def share_points(result: Result) -> list[tuple[float, float]]:
    """The row over its steady window: % of its ceiling for one window, smoothed over one."""
    span = result.steady_span
    ceiling_per_s = result.limits.per_s(result.window_s)
    if span is None or ceiling_per_s <= 0:
        return []
    rates = trailing_rates(result.timeline, result.window_s, span.start_s, span.end_s)
    return [(t_s, 100 * rate / ceiling_per_s) for t_s, rate in rates]


def layout(results: list[Result]) -> list[tuple[str, list[str]]]:
    """The scenarios in their order in the table, each with the modes its rows ran."""
    scenarios = list(dict.fromkeys(r.scenario for r in results if not r.status))
    return [(scenario, [m for m in MODE_ORDER if any(
        r.scenario == scenario and r.mode == m and not r.status for r in results)])
        for scenario in scenarios]


def _draw_panel(axes: Axes, rows: list[Result], title: str) -> None:
    colors = [plt.get_cmap("tab10")(n) for n in range(10)]
    for number, row in enumerate(rows):
        points = share_points(row)
        style, width = STYLES.get(row.kind, OURS_STYLE)
        label = (f"{row.name}: {row.share_of_ceiling:.0%} over its steady window" if points
                 else f"{row.name}: no steady window")
        axes.plot([t for t, _ in points], [v for _, v in points], linestyle=style,
                  linewidth=width, color=colors[number % len(colors)], label=label)
    axes.axhline(100, color="black", linewidth=1, label="ceiling: no client above")
    axes.set_title(title, fontsize="medium")
    axes.set_xlabel("seconds from the first write")
    axes.set_ylabel("% of the ceiling, over the last window")
    axes.set_ylim(0, 120)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), fontsize="x-small",
                frameon=False)


def chart(results: list[Result], machine: str) -> Any:
    """The figure: a row of panels per scenario, a panel per mode."""
    plan = layout(results) or [("no rows", [])]
    columns = max(1, *(len(modes) for _, modes in plan))
    figure, panels = plt.subplots(len(plan), columns, squeeze=False, layout="constrained",
                                  figsize=(PANEL_W_IN * columns, PANEL_H_IN * len(plan)))
    for line, (scenario, modes) in zip(panels, plan, strict=True):
        for axes, mode in zip(line, modes, strict=False):
            rows = [r for r in results if r.scenario == scenario and r.mode == mode
                    and not r.status]
            _draw_panel(axes, rows, f"{scenario} / {mode}")
        for axes in line[len(modes):]:
            axes.set_visible(False)
    figure.suptitle(f"Records written as a share of the ceiling, each row over its steady "
                    f"window\n{machine}", fontsize="medium")
    return figure


def save_chart(results: list[Result], path: Path, machine: str) -> None:
    figure = chart(results, machine)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def results_of(report: dict[str, Any]) -> list[Result]:
    """The rows of a stored report's JSON (``bench-*.json``)."""
    fields = Result.__dataclass_fields__
    rows = [Result(**{key: value for key, value in row.items() if key in fields})
            for row in report["rows"]]
    for row in rows:
        row.timeline = [(float(t), int(done)) for t, done in row.timeline]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chart", description=__doc__)
    parser.add_argument("report", type=Path, help="a stored report's JSON (bench-*.json)")
    parser.add_argument("out", type=Path, help="the PNG to write (never a stored report's)")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text())
    save_chart(results_of(report), args.out, summary(report["machine"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
