"""The bench's enrichment shapes: a product row per shipped shape, opt-in with ``--shapes``."""

from __future__ import annotations

from bench.scenarios import (
    ENRICHMENT_BOUND,
    ENRICHMENT_SHAPES,
    QUICK_SCALE,
    plan_rows,
    shape_of,
)
from sync.local.emulators.enrichment import SHAPES


def test_shape_rows_run_every_shipped_shape_besides_todays_when_asked() -> None:
    assert not [row for row in plan_rows(QUICK_SCALE) if shape_of(row.pattern)]
    rows = [row for row in plan_rows(QUICK_SCALE, shapes=True) if shape_of(row.pattern)]
    assert [shape_of(row.pattern) for row in rows] == list(ENRICHMENT_SHAPES)
    assert set(ENRICHMENT_SHAPES) == set(SHAPES) - {"today"}
    assert {row.scenario for row in rows} == {ENRICHMENT_BOUND}
    assert rows[0].name == "enrichment-bound/product-x1-shape-pdl/bulk"
    assert "pdl shape" in rows[0].note


def test_a_pattern_names_its_shape_or_none() -> None:
    assert shape_of("shape-pdl-bulk") == "pdl-bulk"
    assert shape_of("unchanged-90") is None
