-- The user's history with the offer's partner.
CREATE OR REPLACE TEMP TABLE user_partner_state AS
WITH per_ts AS (
    SELECT upk, ts,
           sum(impressions) AS impressions, sum(clicks) AS clicks, sum(conversions) AS conversions
    FROM events WHERE upk IS NOT NULL GROUP BY upk, ts
)
SELECT upk, ts,
       sum(impressions) OVER w AS impressions, sum(clicks) OVER w AS clicks,
       sum(conversions) OVER w AS conversions
FROM per_ts
-- (key, ts) is unique here, so the default RANGE frame is the running total; it is
-- about twice as fast as ROWS in DuckDB for several aggregates over large partitions.
WINDOW w AS (PARTITION BY upk ORDER BY ts);

CREATE OR REPLACE TEMP TABLE f_user_partner AS
SELECT
    b._i,
    CAST(coalesce(s.impressions, 0) AS DOUBLE) AS up_impressions,
    CAST(coalesce(s.clicks, 0) AS DOUBLE) AS up_clicks,
    CAST(coalesce(s.conversions, 0) AS DOUBLE) AS up_conversions
FROM base AS b
ASOF LEFT JOIN user_partner_state AS s ON s.upk = b.upk AND b.ts > s.ts;
