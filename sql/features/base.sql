-- The impressions to featurize: one row each, ordered by time and request (so every request's
-- rows are contiguous, as a ranker's groups must be), with a dense row index _i, the event day,
-- the offer's and user's catalogue attributes, and the extra raw columns passed through
-- ({{ extras }}, chosen in build_features.py).
CREATE OR REPLACE TEMP TABLE base AS
SELECT
    CAST(row_number() OVER (ORDER BY i.ts, i.request_id, i.position, i.offer_id) - 1 AS BIGINT) AS _i,
    i.request_id, i.ts, CAST(i.ts AS DATE) AS day, i.user_id, i.offer_id, i.position,
    i.label, i.value, i.propensity, i.policy, i.click_ts, i.conversion_ts,
    i.surface, i.device, i.country,
    o.category, o.partner, o.payout, o.start_ts, o.end_ts,
    u.signup_ts
    {{ extras }}
FROM read_parquet({{ impressions }}) AS i
LEFT JOIN read_parquet({{ offers }}) AS o USING (offer_id)
LEFT JOIN read_parquet({{ users }}) AS u USING (user_id);
