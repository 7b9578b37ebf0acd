"""The benchmark's rows: figures per strategy, a table on stdout, a plot of records/s over time."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt


@dataclass
class Row:
    """One strategy's figures."""

    name: str
    mode: str
    records: int
    elapsed_s: float
    lost: int
    created: int
    throttled_by_code: dict[str, int]
    retry_wait_s: float
    cpu_s: float
    peak_rss_mib: float
    mode_ceiling: float
    overall_ceiling: float
    late_429_share: float
    timeline: list[tuple[float, int]] = field(default_factory=list)
    window_s: float = 0.0

    @property
    def rate_per_s(self) -> float:
        """Records per second over the whole run, the first window's burst included."""
        return self.records / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def steady_rate_per_s(self) -> float:
        """Records per second after the first window, when the limits have caught up."""
        after = [(t, done) for t, done in self.timeline if t >= self.window_s]
        if len(after) < 2 or after[-1][0] <= after[0][0]:
            return self.rate_per_s
        return (after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0])

    def line(self) -> str:
        return (f"{self.name:<22} {self.rate_per_s:8.1f} rec/s, steady "
                f"{self.steady_rate_per_s:8.1f} rec/s = "
                f"{self.steady_rate_per_s / self.overall_ceiling:6.1%} of the overall ceiling")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate_per_s": self.rate_per_s,
                "steady_rate_per_s": self.steady_rate_per_s}

    @classmethod
    def from_baseline(cls, name: str, tally: dict[str, Any], stats: dict[str, Any],
                      elapsed_s: float, cpu_s: float, peak_rss_mib: float,
                      mode_ceiling: float, overall_ceiling: float) -> Row:
        timeline = [tuple(point) for point in tally.get("timeline", [])]
        active_s = timeline[-1][0] if timeline else elapsed_s
        return cls(name=name, mode="single", records=int(tally.get("written", 0)),
                   elapsed_s=float(active_s), lost=int(tally.get("lost", 0)),
                   created=_created(stats), throttled_by_code=dict(tally.get(
                       "throttled_by_code", {})), retry_wait_s=float(tally.get(
                       "retry_wait_s", 0.0)), cpu_s=cpu_s, peak_rss_mib=peak_rss_mib,
                   mode_ceiling=mode_ceiling, overall_ceiling=overall_ceiling,
                   late_429_share=_late_share(stats), timeline=timeline)

    @classmethod
    def from_product(cls, name: str, mode: str, data: dict[str, Any], mode_ceiling: float,
                     overall_ceiling: float) -> Row:
        check = data.get("verification") or {}
        stats = data.get("emulator_stats") or {}
        hosts = data.get("hosts", [])
        return cls(name=name, mode=mode, records=int(data["written"]),
                   elapsed_s=float(data["elapsed_s"]),
                   lost=len(check.get("unaccounted", [])) if data.get("finished") else
                   int(data["planned"]) - int(data["written"]) - int(data["dead_lettered"]),
                   created=int(check.get("created", 0)),
                   throttled_by_code=dict(data.get("throttled_by_code", {})),
                   retry_wait_s=float(data.get("requeue_delay_s", 0.0)),
                   cpu_s=sum(h["cpu_s"] for h in hosts),
                   peak_rss_mib=max((h["peak_rss_mib"] for h in hosts), default=0.0),
                   mode_ceiling=mode_ceiling, overall_ceiling=overall_ceiling,
                   late_429_share=_late_share(stats),
                   timeline=[tuple(p) for p in data.get("timeline", [])])


def _created(stats: dict[str, Any]) -> int:
    return int(stats.get("records", {}).get("created", 0))


def _late_share(stats: dict[str, Any]) -> float:
    late = stats.get("after_first_window", {})
    requests = int(late.get("requests", 0))
    return int(late.get("throttled", 0)) / requests if requests else 0.0


def print_table(rows: list[Row], ceiling: dict[str, float]) -> None:
    """The results as a Markdown table (pasted into the README as is)."""
    print(f"\nCeiling (records/s): Dataverse single {ceiling['single']:.0f}, batch "
          f"{ceiling['batch']:.0f}, bulk {ceiling['bulk']:.0f}; enrichment API "
          f"{ceiling['enrichment']:.0f}; overall (the best mode within both) "
          f"{ceiling['overall']:.0f}\n")
    print("| strategy | records | records/s | steady records/s | of its mode's ceiling | "
          "of overall ceiling | 429s | 429 share after 1st window | Retry-After wait s | "
          "lost | created | CPU s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        codes = ", ".join(f"{c} {n}" for c, n in sorted(row.throttled_by_code.items())) or "0"
        steady = row.steady_rate_per_s
        print(f"| {row.name} | {row.records} | {row.rate_per_s:.1f} | {steady:.1f} | "
              f"{steady / row.mode_ceiling:.0%} | "
              f"{steady / row.overall_ceiling:.0%} | {codes} | "
              f"{row.late_429_share:.2%} | {row.retry_wait_s:.0f} | {row.lost} | "
              f"{row.created} | {row.cpu_s:.1f} | {row.peak_rss_mib:.0f} |")


def write_plot(rows: list[Row], ceiling: dict[str, float], path: Path) -> None:
    """Records/s over time per strategy, with the overall ceiling drawn."""
    figure, axes = plt.subplots(figsize=(10, 5.5))
    for row in rows:
        points = row.timeline
        rates = [(t1, (d1 - d0) / (t1 - t0)) for (t0, d0), (t1, d1) in
                 zip(points[::4], points[4::4], strict=False) if t1 > t0]
        if rates:
            axes.plot([t for t, _ in rates], [r for _, r in rates], label=row.name)
    axes.axhline(ceiling["overall"], color="black", linestyle="--", label="overall ceiling")
    axes.set_xlabel("seconds")
    axes.set_ylabel("records/s")
    axes.set_title("Records enriched and written per second")
    axes.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
