-- The impressions to featurize: one row each, with the request's time and day, the offer's and
-- user's catalogue attributes, and the extra raw columns passed through under their feature
-- names ({{ extras }}, chosen in build_features.py). Rows are in no particular order (the
-- window and the joins reorder them); assemble.sql sorts once, at the end.
--
-- Entities are keyed by 64-bit hashes of their ids (_r request, uk user, ok offer, uck
-- user×category, upk user×partner, uok user×offer): sorting, grouping and joining 10M rows on
-- integers is several times faster than on text. The chance of any collision among 10M keys is
-- about 3e-6. An offer without a category still gets a uck (the user's with a NULL category,
-- which has no history: user_category.sql); one without a partner gets no upk.
CREATE OR REPLACE TEMP TABLE base AS
WITH joined AS (
    SELECT
        -- a request's time is its first impression's: every impression of a request must see
        -- the same history, even when logged timestamps of one page view differ slightly
        i.request_id, min(i.ts) OVER (PARTITION BY i.request_id) AS ts,
        CAST(min(i.ts) OVER (PARTITION BY i.request_id) AS DATE) AS day, i.user_id, i.offer_id, i.position,
        i.label, i.value, i.propensity, i.policy, i.click_ts, i.conversion_ts,
        i.surface, i.device, i.country,
        o.category, o.partner, o.payout, o.start_ts, o.end_ts,
        u.signup_ts,
        hash(i.request_id) AS _r, hash(i.user_id) AS uk, hash(i.offer_id) AS ok,
        hash(i.user_id, o.category) AS uck,
        CASE WHEN o.partner IS NOT NULL THEN hash(i.user_id, o.partner) END AS upk,
        hash(i.user_id, i.offer_id) AS uok
        {{ extras }}
    FROM read_parquet({{ impressions }}) AS i
    LEFT JOIN read_parquet({{ offers }}) AS o USING (offer_id)
    LEFT JOIN read_parquet({{ users }}) AS u USING (user_id)
)
FROM joined;
