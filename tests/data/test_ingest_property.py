"""Property: on randomly corrupted simulated logs, ingest accounts for every row, and the counts
per reason equal what an independent polars computation expects from the corruption plan."""

from __future__ import annotations

import shutil
from collections import Counter

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offer_ranker.config import SimulateConfig
from offer_ranker.data.ingest import ingest
from offer_ranker.simulator import simulate

TABLES = ("impressions", "clicks", "conversions", "offers", "users")
KEY = ["request_id", "offer_id"]

# kind -> (column, replacement text); the kind is also the reason ingest must give
CORRUPTIONS = {
    "impressions": {
        "null_request_id": ("request_id", None),
        "null_user_id": ("user_id", None),
        "bad_ts": ("ts", "not-a-time"),
        "bad_position": ("position", "0"),
        "bad_propensity": ("propensity", "1.5"),
        "unknown_offer": ("offer_id", "o-not-in-catalogue"),
    },
    "clicks": {
        "null_offer_id": ("offer_id", None),
        "bad_ts": ("ts", "tomorrow"),
        "no_impression": ("request_id", "r-never-shown"),
    },
    "conversions": {
        "bad_ts": ("ts", "2026-13-01T00:00:00Z"),
        "negative_value": ("value", "-5"),
        "no_impression": ("request_id", "r-never-shown"),
    },
}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    raw = tmp_path_factory.mktemp("sim")
    simulate(SimulateConfig(users=150, offers=60, days=3, seed=11), raw)
    # all text, as logs in the wild arrive; timestamps in ISO 8601 with an explicit offset
    frames = {}
    for name in TABLES:
        frame = pl.read_parquet(raw / f"{name}.parquet")
        frames[name] = frame.with_columns(
            [pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00") for c, t in frame.schema.items()
             if isinstance(t, pl.Datetime)]
        ).with_columns(pl.all().cast(pl.Utf8))
    return frames


def _plan(draw: st.DrawFn, table: str, n_rows: int) -> tuple[dict[int, str], list[int]]:
    """Rows to corrupt (row -> kind) and untouched rows to duplicate."""
    rows = draw(st.lists(st.integers(0, n_rows - 1), unique=True, max_size=min(25, n_rows)))
    kinds = st.sampled_from(sorted(CORRUPTIONS[table]))
    corrupt = {row: draw(kinds) for row in rows}
    untouched = st.integers(0, n_rows - 1).filter(lambda r: r not in corrupt)
    dups = draw(st.lists(untouched, max_size=10))
    return corrupt, dups


def _apply(frame: pl.DataFrame, table: str, corrupt: dict[int, str], dups: list[int]) -> pl.DataFrame:
    rows = frame.to_dicts()
    for row, kind in corrupt.items():
        column, value = CORRUPTIONS[table][kind]
        rows[row][column] = value
    rows += [dict(rows[r]) for r in dups]
    return pl.DataFrame(rows, schema=frame.schema)


@st.composite
def corruption_plans(draw: st.DrawFn, sizes: dict[str, int]) -> dict[str, tuple[dict[int, str], list[int]]]:
    return {t: _plan(draw, t, sizes[t]) for t in CORRUPTIONS}


def _keys(frame: pl.DataFrame, rows: list[int] | set[int]) -> set[tuple[str, str]]:
    return {tuple(frame.row(r, named=True)[c] for c in KEY) for r in rows}


def _expected(frames: dict[str, pl.DataFrame], plans: dict) -> dict[str, dict]:
    """Accounting per table derived from the plan, independently of the SQL."""
    imp, clk, conv = frames["impressions"], frames["clicks"], frames["conversions"]
    (imp_bad, imp_dups), (clk_bad, clk_dups), (conv_bad, conv_dups) = (
        plans["impressions"], plans["clicks"], plans["conversions"])
    lost_impressions = _keys(imp, imp_bad)  # every simulated (request, offer) key is unique

    def events(frame: pl.DataFrame, bad: dict[int, str], dups: list[int]) -> tuple[Counter, int, set]:
        reasons: Counter = Counter(bad.values())
        duplicates = 0
        accepted_keys = set()
        for r in range(frame.height):
            if r in bad:
                continue
            key = _keys(frame, [r]).pop()
            copies = 1 + dups.count(r)
            if key in lost_impressions:
                reasons["no_impression"] += copies
            else:
                duplicates += copies - 1
                accepted_keys.add(key)
        return reasons, duplicates, accepted_keys

    clk_reasons, clk_dup, click_keys = events(clk, clk_bad, clk_dups)
    conv_reasons, conv_dup, conv_keys = events(conv, conv_bad, conv_dups)
    return {
        "impressions": {"quarantined_by_reason": dict(Counter(imp_bad.values())), "duplicates": len(imp_dups),
                        "accepted": imp.height - len(imp_bad), "read": imp.height + len(imp_dups)},
        "clicks": {"quarantined_by_reason": dict(clk_reasons), "duplicates": clk_dup,
                   "accepted": len(click_keys), "read": clk.height + len(clk_dups)},
        "conversions": {"quarantined_by_reason": dict(conv_reasons), "duplicates": conv_dup,
                        "accepted": len(conv_keys), "read": conv.height + len(conv_dups),
                        "without_click": len(conv_keys - click_keys)},
        "labelled": {"positive": len(click_keys | conv_keys), "converted": len(conv_keys)},
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), fmt=st.sampled_from(["csv", "parquet"]))
def test_accounting_holds_on_randomly_corrupted_logs(
    simulated: dict[str, pl.DataFrame], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, fmt: str
) -> None:
    plans = data.draw(corruption_plans({t: simulated[t].height for t in CORRUPTIONS}))
    work = tmp_path_factory.mktemp("corrupted")
    raw = work / "raw"
    raw.mkdir()
    for name in TABLES:
        frame = _apply(simulated[name], name, *plans[name]) if name in plans else simulated[name]
        if fmt == "csv":
            frame.write_csv(raw / f"{name}.csv")
        else:
            frame.write_parquet(raw / f"{name}.parquet")

    report = ingest(raw, work / "out")
    expected = _expected(simulated, plans)

    for name, t in report["tables"].items():
        assert t["read"] == t["accepted"] + t["duplicates"] + t["quarantined"], name
        out_rows = pl.read_parquet(work / "out" / t["output"]).height
        assert out_rows == t["accepted"], name
        q_rows = pl.read_parquet(work / "out" / t["quarantine"]).height if t["quarantined"] else 0
        assert q_rows == t["quarantined"], name
    for name in CORRUPTIONS:
        got = {k: report["tables"][name][k] for k in ("quarantined_by_reason", "duplicates", "accepted", "read")}
        want = {k: expected[name][k] for k in got}
        assert got == want, name
    assert report["tables"]["conversions"]["flagged"].get("without_click", 0) == expected["conversions"]["without_click"]
    labelled = pl.read_parquet(work / "out" / "impressions.parquet")
    assert (labelled["label"] >= 1).sum() == expected["labelled"]["positive"]
    assert (labelled["label"] == 2).sum() == expected["labelled"]["converted"]
    shutil.rmtree(work)
