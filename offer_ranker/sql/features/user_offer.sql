-- The user's history with this very offer: seen, clicked, converted before, and how long ago.
-- One row per (user×offer, request ts): the running totals at ts minus the events at ts.
CREATE OR REPLACE TEMP TABLE f_user_offer AS
WITH per_ts AS (
    SELECT uok, ts,
           sum(impressions) AS impressions, sum(clicks) AS clicks, sum(conversions) AS conversions
    FROM events GROUP BY uok, ts
), running AS (
    SELECT uok, ts, impressions AS ts_impressions,
           sum(impressions) OVER w - impressions AS impressions, sum(clicks) OVER w - clicks AS clicks,
           sum(conversions) OVER w - conversions AS conversions,
           max(CASE WHEN impressions > 0 THEN ts END) OVER before AS last_seen
    FROM per_ts
    -- (key, ts) is unique here, so the default RANGE frame is the running total; it is
    -- about twice as fast as ROWS in DuckDB for several aggregates over large partitions.
    WINDOW w AS (PARTITION BY uok ORDER BY ts),
           before AS (PARTITION BY uok ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT
    uok, ts,
    CAST(impressions AS DOUBLE) AS uo_impressions,
    CAST(clicks AS DOUBLE) AS uo_clicks,
    CAST(conversions AS DOUBLE) AS uo_conversions,
    hours_between(last_seen, ts) AS uo_hours_since_seen
FROM running
WHERE ts_impressions > 0;
