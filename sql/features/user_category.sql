-- The user's history with the offer's category: counts, a click rate smoothed towards the
-- category's prior, and the category's share of the user's clicks. Needs f_user_history.
CREATE OR REPLACE TEMP TABLE user_category_state AS
WITH per_ts AS (
    SELECT uck, ts, sum(impressions) AS impressions, sum(clicks) AS clicks
    FROM events WHERE uck IS NOT NULL GROUP BY uck, ts
)
SELECT uck, ts,
       sum(impressions) OVER w AS impressions, sum(clicks) OVER w AS clicks
FROM per_ts
-- (key, ts) is unique here, so the default RANGE frame is the running total; it is
-- about twice as fast as ROWS in DuckDB for several aggregates over large partitions.
WINDOW w AS (PARTITION BY uck ORDER BY ts);

CREATE OR REPLACE TEMP TABLE f_user_category AS
WITH s AS (
    SELECT b._i, b.day, coalesce(b.category, '') AS category_key,
           coalesce(s.impressions, 0) AS impressions, coalesce(s.clicks, 0) AS clicks
    FROM base AS b
    ASOF LEFT JOIN user_category_state AS s
        ON s.uck = b.uck AND b.ts > s.ts
)
SELECT
    s._i,
    CAST(s.impressions AS DOUBLE) AS uc_impressions,
    CAST(s.clicks AS DOUBLE) AS uc_clicks,
    smoothed(s.clicks, s.impressions, p.ctr_mean, p.ctr_strength) AS uc_ctr,
    CASE WHEN u.user_clicks > 0 THEN s.clicks / u.user_clicks END AS uc_click_share
FROM s
JOIN offer_priors AS p ON p.day = s.day AND p.category_key = s.category_key
JOIN f_user_history AS u ON u._i = s._i;
