-- The user's history with the offer's partner.
CREATE OR REPLACE TEMP TABLE user_partner_state AS
WITH per_ts AS (
    SELECT upk, ts,
           sum(impressions) AS impressions, sum(clicks) AS clicks, sum(conversions) AS conversions
    FROM events WHERE upk IS NOT NULL GROUP BY upk, ts
)
SELECT upk, ts, impressions AS ts_impressions, clicks AS ts_clicks, conversions AS ts_conversions,
       sum(impressions) OVER w AS impressions, sum(clicks) OVER w AS clicks,
       sum(conversions) OVER w AS conversions
FROM per_ts
-- (key, ts) is unique here, so the default RANGE frame is the running total; it is
-- about twice as fast as ROWS in DuckDB for several aggregates over large partitions.
WINDOW w AS (PARTITION BY upk ORDER BY ts);

-- One row per (user×partner, request ts); offers without a partner get zeros (assemble.sql).
CREATE OR REPLACE TEMP TABLE f_user_partner AS
SELECT
    upk, ts,
    CAST(impressions - ts_impressions AS DOUBLE) AS up_impressions,
    CAST(clicks - ts_clicks AS DOUBLE) AS up_clicks,
    CAST(conversions - ts_conversions AS DOUBLE) AS up_conversions
FROM user_partner_state
WHERE ts_impressions > 0;
