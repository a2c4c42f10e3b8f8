-- The user's history with the offer's category: counts, a click rate smoothed towards the
-- category's prior, and the category's share of the user's clicks. Needs f_user_history.
-- One row per (user×category, request ts): the running totals at ts minus the events at ts.
-- Offers without a category have no history with it (their key is the user's with a NULL
-- category, see base.sql): zero counts, the global prior.
CREATE OR REPLACE TEMP TABLE f_user_category AS
WITH per_ts AS (
    SELECT uck, ts, any_value(uk) AS uk, any_value(category) AS category,
           sum(impressions) AS impressions, sum(clicks) AS clicks
    FROM events GROUP BY uck, ts
), running AS (
    SELECT uck, uk, ts, CAST(ts AS DATE) AS day, coalesce(category, '') AS category_key,
           impressions AS ts_impressions,
           CASE WHEN category IS NOT NULL THEN sum(impressions) OVER w - impressions ELSE 0 END AS impressions,
           CASE WHEN category IS NOT NULL THEN sum(clicks) OVER w - clicks ELSE 0 END AS clicks
    FROM per_ts
    -- (key, ts) is unique here, so the default RANGE frame is the running total; it is
    -- about twice as fast as ROWS in DuckDB for several aggregates over large partitions.
    WINDOW w AS (PARTITION BY uck ORDER BY ts)
)
SELECT
    s.uck, s.ts,
    CAST(s.impressions AS DOUBLE) AS uc_impressions,
    CAST(s.clicks AS DOUBLE) AS uc_clicks,
    smoothed(s.clicks, s.impressions, p.ctr_mean, p.ctr_strength) AS uc_ctr,
    CASE WHEN u.user_clicks > 0 THEN s.clicks / u.user_clicks END AS uc_click_share
FROM running AS s
JOIN offer_priors AS p ON p.day = s.day AND p.category_key = s.category_key
JOIN f_user_history AS u ON u.uk = s.uk AND u.ts = s.ts
WHERE s.ts_impressions > 0;
