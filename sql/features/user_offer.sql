-- The user's history with this very offer: seen, clicked, converted before, and how long ago.
CREATE OR REPLACE TEMP TABLE user_offer_state AS
WITH per_ts AS (
    SELECT uok, ts,
           sum(impressions) AS impressions, sum(clicks) AS clicks, sum(conversions) AS conversions
    FROM events GROUP BY uok, ts
)
SELECT uok, ts,
       sum(impressions) OVER w AS impressions, sum(clicks) OVER w AS clicks,
       sum(conversions) OVER w AS conversions,
       max(CASE WHEN impressions > 0 THEN ts END) OVER w AS last_seen
FROM per_ts
-- (key, ts) is unique here, so the default RANGE frame is the running total; it is
-- about twice as fast as ROWS in DuckDB for several aggregates over large partitions.
WINDOW w AS (PARTITION BY uok ORDER BY ts);

CREATE OR REPLACE TEMP TABLE f_user_offer AS
SELECT
    b._i,
    CAST(coalesce(s.impressions, 0) AS DOUBLE) AS uo_impressions,
    CAST(coalesce(s.clicks, 0) AS DOUBLE) AS uo_clicks,
    CAST(coalesce(s.conversions, 0) AS DOUBLE) AS uo_conversions,
    hours_between(s.last_seen, b.ts) AS uo_hours_since_seen
FROM base AS b
ASOF LEFT JOIN user_offer_state AS s ON s.uok = b.uok AND b.ts > s.ts;
