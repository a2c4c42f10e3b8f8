-- User history before each page view: counts, a smoothed click rate, recency, newness, tenure.
-- Events of one user at one timestamp are one page view (all its impressions share the ts).
CREATE OR REPLACE TEMP TABLE user_state AS
WITH per_ts AS (
    SELECT uk, ts,
           CAST(sum(impressions) > 0 AS INTEGER) AS requests,
           sum(impressions) AS impressions, sum(clicks) AS clicks, sum(conversions) AS conversions
    FROM events GROUP BY uk, ts
)
SELECT uk, ts,
       sum(requests) OVER w AS requests,
       sum(impressions) OVER w AS impressions,
       sum(clicks) OVER w AS clicks,
       sum(conversions) OVER w AS conversions,
       max(CASE WHEN requests > 0 THEN ts END) OVER w AS last_visit,
       max(CASE WHEN clicks > 0 THEN ts END) OVER w AS last_click
FROM per_ts
-- (key, ts) is unique here, so the default RANGE frame is the running total; it is
-- about twice as fast as ROWS in DuckDB for several aggregates over large partitions.
WINDOW w AS (PARTITION BY uk ORDER BY ts);

CREATE OR REPLACE TEMP TABLE f_user_history AS
SELECT
    b._i,
    CAST(coalesce(s.requests, 0) AS DOUBLE) AS user_requests,
    CAST(coalesce(s.impressions, 0) AS DOUBLE) AS user_impressions,
    CAST(coalesce(s.clicks, 0) AS DOUBLE) AS user_clicks,
    CAST(coalesce(s.conversions, 0) AS DOUBLE) AS user_conversions,
    smoothed(coalesce(s.clicks, 0), coalesce(s.impressions, 0), p.mean, p.strength) AS user_ctr,
    CAST(coalesce(s.requests, 0) = 0 AS DOUBLE) AS user_is_new,
    hours_between(s.last_visit, b.ts) AS user_hours_since_last_visit,
    hours_between(s.last_click, b.ts) AS user_hours_since_last_click,
    hours_between(b.signup_ts, b.ts) / 24 AS user_days_since_signup
FROM base AS b
ASOF LEFT JOIN user_state AS s ON s.uk = b.uk AND b.ts > s.ts
JOIN user_priors AS p ON p.day = b.day;
