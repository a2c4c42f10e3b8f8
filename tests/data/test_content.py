"""The content prior (offer_ranker/featurize/content.py): fitted on the training window's text,
point-in-time by day, never an offer's own click rate, absent without text."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from offer_ranker.featurize.content import neighbour_priors

DAY = date(2026, 1, 5)
START = datetime(2026, 1, 1)


def _offers() -> pl.DataFrame:
    """Two families of wording: 'premium gym ...' (offers 0-11) and 'cheap phone ...' (12-23), and
    one offer without text; all live from START for ten days."""
    titles = [f"premium gym membership award winning {i}" for i in range(12)]
    titles += [f"cheap phone plan basic deal {i}" for i in range(12)] + [None]
    n = len(titles)
    return pl.DataFrame({"offer_id": [f"o{i:02d}" for i in range(n)], "start_ts": [START] * n,
                         "end_ts": [START + timedelta(days=10)] * n, "title": titles, "description": [None] * n})


def _history(day: date, ctr_gym: float, ctr_phone: float) -> pl.DataFrame:
    ids = [f"o{i:02d}" for i in range(24)]
    ctr = [ctr_gym] * 12 + [ctr_phone] * 12
    return pl.DataFrame({"day": [day] * 24, "offer_id": ids, "impressions": [1000.0] * 24,
                         "clicks": [1000.0 * c for c in ctr]})


def _smoothed(ctr: float) -> float:
    return (1000 * ctr + 1) / (1000 + 20)


def test_the_prior_is_the_click_rate_of_offers_worded_alike() -> None:
    priors = neighbour_priors(_offers(), _history(DAY, 0.10, 0.01), ("title", "description"), datetime(2026, 1, 2),
                              [DAY], neighbours=5, min_evidence=20)
    by_offer = dict(zip(priors["offer_id"], priors["offer_content_ctr"]))
    assert by_offer["o00"] == pytest.approx(_smoothed(0.10)) and by_offer["o12"] == pytest.approx(_smoothed(0.01))
    assert "o24" not in by_offer  # no text, no prior
    assert set(priors["day"]) == {DAY}


def test_an_offer_is_never_its_own_neighbour() -> None:
    history = _history(DAY, 0.05, 0.05).with_columns(
        clicks=pl.when(pl.col("offer_id") == "o00").then(900.0).otherwise(pl.col("clicks")))
    priors = neighbour_priors(_offers(), history, ("title",), datetime(2026, 1, 2), [DAY], neighbours=5,
                              min_evidence=20)
    assert dict(zip(priors["offer_id"], priors["offer_content_ctr"]))["o00"] == pytest.approx(_smoothed(0.05))


def test_only_the_days_history_counts_and_too_little_gives_none() -> None:
    """Each day reads only its own rows of the history (the events before it); with no more known
    offers than neighbours, there is no prior."""
    history = pl.concat([_history(DAY, 0.10, 0.01), _history(DAY + timedelta(days=1), 0.01, 0.10)])
    priors = neighbour_priors(_offers(), history, ("title",), datetime(2026, 1, 2), [DAY, DAY + timedelta(days=1)],
                              neighbours=5, min_evidence=20)
    first = priors.filter(pl.col("day") == DAY).sort("offer_id")["offer_content_ctr"].to_numpy()
    second = priors.filter(pl.col("day") == DAY + timedelta(days=1)).sort("offer_id")["offer_content_ctr"].to_numpy()
    assert np.allclose(first[:12], _smoothed(0.10)) and np.allclose(second[:12], _smoothed(0.01))
    few = neighbour_priors(_offers(), _history(DAY, 0.1, 0.1).head(5), ("title",), datetime(2026, 1, 2), [DAY],
                           neighbours=5, min_evidence=20)
    assert few.height == 0


def test_the_vocabulary_comes_from_the_training_windows_catalogue() -> None:
    """Words of offers that start after train_until are not in the vocabulary: an offer worded only
    with them has no neighbours by text, so no prior."""
    offers = _offers().with_columns(
        start_ts=pl.when(pl.col("offer_id") >= "o12").then(datetime(2026, 1, 4)).otherwise(START))
    priors = neighbour_priors(offers, _history(DAY, 0.10, 0.01), ("title",), datetime(2026, 1, 2), [DAY],
                              neighbours=5, min_evidence=20)
    by_offer = dict(zip(priors["offer_id"], priors["offer_content_ctr"]))
    assert "o12" not in by_offer and by_offer["o00"] == pytest.approx(_smoothed(0.10))
