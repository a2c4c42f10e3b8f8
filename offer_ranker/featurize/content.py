"""Content: the offers' text as vectors, and the cold-start prior read off content neighbours.

The text columns of the offers table (``features.text_columns`` that exist) become one vector per
offer: TF-IDF over words and word pairs, projected on its ``DIMENSIONS`` leading SVD directions and
L2-normalised, both fitted on the catalogue of the training window only (the offers that started
before ``train_until``). The projection keeps what varies across the catalogue (what an offer
is, how it is pitched) and drops what makes two offers' words merely coincide (a partner's name),
which the full TF-IDF vectors matched on: measured, the full vectors' neighbours did not help new
offers, the projection's did (docs/modeling.md).

For every day, the prior of each offer is the mean (lightly) smoothed click rate of its ``neighbours``
nearest offers by the cosine of those vectors (weighted by it), among the offers with at least
``min_evidence`` impressions before the day; the offer itself is never its own neighbour. It is
recomputed per day from the history before the day, like the priors of ``priors.sql``, so it is
point-in-time; the day after the last is the one the online snapshot serves with. An offer without
a word of the vocabulary (no text, or only words the training window never used), or a day with
no more known offers than ``neighbours``, has no prior (NULL).
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import polars as pl

#: the dimensions of the text vectors (the SVD projection of TF-IDF)
DIMENSIONS = 8
#: each neighbour's click rate is smoothed by this many clicks in this many impressions (a 5% prior
#: worth 20 impressions; the neighbours have min_evidence of their own). Measured: smoothing towards
#: each category's prior instead shrinks away the differences between offers the prior is made of
#: (efficiency +0.0017 instead of +0.0038 over three training seeds, docs/modeling.md).
PRIOR_CLICKS, PRIOR_IMPRESSIONS = 1.0, 20.0
#: the columns of the daily table (registered in DuckDB as ``content_priors``)
SCHEMA = {"day": pl.Date, "offer_id": pl.String, "offer_content_ctr": pl.Float64}


def offer_texts(offers: pl.DataFrame, columns: tuple[str, ...]) -> pl.Series:
    """Each offer's text columns joined by spaces; None where all of them are empty."""
    text = pl.concat_str([pl.col(c).fill_null("") for c in columns], separator=" ").str.strip_chars()
    return offers.select(pl.when(text != "").then(text).alias("text"))["text"]


def vectors(texts: pl.Series, fit_on: np.ndarray) -> np.ndarray | None:
    """(offers, DIMENSIONS) unit rows for ``texts``: TF-IDF then SVD, both fitted on
    ``texts[fit_on]`` (all zeros for a text with no word of that vocabulary); None when those hold
    no word seen twice. A vocabulary of at most DIMENSIONS words is used as it is."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    known = texts.filter(pl.Series(fit_on)).drop_nulls().to_list()
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    try:
        words = tfidf.fit_transform(known)
    except ValueError:  # an empty vocabulary
        return None
    matrix = tfidf.transform(texts.fill_null("").to_list())
    if words.shape[1] > DIMENSIONS:
        with np.errstate(divide="ignore", invalid="ignore"):  # its explained-variance ratio, unused
            matrix = TruncatedSVD(DIMENSIONS, random_state=0).fit(words).transform(matrix)
    return normalize(np.asarray(matrix.todense() if hasattr(matrix, "todense") else matrix))


def neighbour_priors(offers: pl.DataFrame, history: pl.DataFrame, columns: tuple[str, ...], train_until: datetime,
                     days: list[date], neighbours: int, min_evidence: int) -> pl.DataFrame:
    """The prior of every offer of ``offers`` (offer_id, start_ts, end_ts, the text ``columns``)
    live on each of ``days``: ``SCHEMA`` rows.

    ``history``: day, offer_id, impressions, clicks: each offer's counts from the events before
    the day (``content_history.sql``).
    """
    texts = offer_texts(offers, columns)
    matrix = vectors(texts, (offers["start_ts"] < train_until).to_numpy()) if offers.height else None
    if matrix is None:
        return pl.DataFrame(schema=SCHEMA)
    row = {offer: i for i, offer in enumerate(offers["offer_id"].to_list())}
    has_text = np.abs(matrix).sum(axis=1) > 0  # some word of the vocabulary
    start, end = offers["start_ts"], offers["end_ts"]
    parts = []
    for day in days:
        begin, stop = datetime.combine(day, datetime.min.time()), datetime.combine(day, datetime.max.time())
        live = offers.filter(((start <= stop) | start.is_null()) & ((end >= begin) | end.is_null()))["offer_id"]
        known = history.filter((pl.col("day") == day) & (pl.col("impressions") >= min_evidence)
                               & pl.col("offer_id").is_in(list(row)))
        wanted = [o for o in live.to_list() if has_text[row[o]]]
        if known.height <= neighbours or not wanted:  # (one more: the offer itself may be among them)
            continue
        ids = known["offer_id"].to_list()
        ctr = ((known["clicks"] + PRIOR_CLICKS) / (known["impressions"] + PRIOR_IMPRESSIONS)).to_numpy()
        similarity = matrix[[row[o] for o in wanted]] @ matrix[[row[o] for o in ids]].T
        own = {o: j for j, o in enumerate(ids)}
        for i, offer in enumerate(wanted):
            if offer in own:
                similarity[i, own[offer]] = -np.inf
        top = np.argpartition(-similarity, neighbours - 1, axis=1)[:, :neighbours]
        weight = np.maximum(np.take_along_axis(similarity, top, axis=1), 0.0) + 1e-6
        prior = (weight * ctr[top]).sum(axis=1) / weight.sum(axis=1)
        parts.append(pl.DataFrame({"day": [day] * len(wanted), "offer_id": wanted, "offer_content_ctr": prior},
                                  schema=SCHEMA))
    return pl.concat(parts) if parts else pl.DataFrame(schema=SCHEMA)
