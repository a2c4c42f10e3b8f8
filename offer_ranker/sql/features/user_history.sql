-- User history before each page view: counts, a smoothed click rate, recency, newness, tenure.
-- Events of one user at one timestamp are one page view (all its impressions share the ts).
-- user_state: running totals up to and including each (user, event time) (the online snapshot
-- reads them), the events at that time (ts_*), and the last visit / click strictly before it.
CREATE OR REPLACE TEMP TABLE user_state AS
WITH per_ts AS (
    SELECT uk, ts,
           CAST(sum(impressions) > 0 AS INTEGER) AS requests,
           sum(impressions) AS impressions, sum(clicks) AS clicks, sum(conversions) AS conversions
    FROM events GROUP BY uk, ts
)
SELECT uk, ts,
       requests AS ts_requests, impressions AS ts_impressions, clicks AS ts_clicks, conversions AS ts_conversions,
       sum(requests) OVER w AS requests,
       sum(impressions) OVER w AS impressions,
       sum(clicks) OVER w AS clicks,
       sum(conversions) OVER w AS conversions,
       max(CASE WHEN requests > 0 THEN ts END) OVER w AS last_visit,
       max(CASE WHEN clicks > 0 THEN ts END) OVER w AS last_click,
       max(CASE WHEN requests > 0 THEN ts END) OVER before AS last_visit_before,
       max(CASE WHEN clicks > 0 THEN ts END) OVER before AS last_click_before
FROM per_ts
-- (key, ts) is unique here, so the default RANGE frame is the running total; it is
-- about twice as fast as ROWS in DuckDB for several aggregates over large partitions.
WINDOW w AS (PARTITION BY uk ORDER BY ts),
       before AS (PARTITION BY uk ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING);

-- One row per (user, request ts): the history strictly before it is the running total at ts
-- minus the events at ts.
CREATE OR REPLACE TEMP TABLE f_user_history AS
WITH signup AS (SELECT uk, any_value(signup_ts) AS signup_ts FROM base GROUP BY uk)
SELECT
    s.uk, s.ts,
    CAST(s.requests - s.ts_requests AS DOUBLE) AS user_requests,
    CAST(s.impressions - s.ts_impressions AS DOUBLE) AS user_impressions,
    CAST(s.clicks - s.ts_clicks AS DOUBLE) AS user_clicks,
    CAST(s.conversions - s.ts_conversions AS DOUBLE) AS user_conversions,
    smoothed(s.clicks - s.ts_clicks, s.impressions - s.ts_impressions, p.mean, p.strength) AS user_ctr,
    CAST(s.requests - s.ts_requests = 0 AS DOUBLE) AS user_is_new,
    hours_between(s.last_visit_before, s.ts) AS user_hours_since_last_visit,
    hours_between(s.last_click_before, s.ts) AS user_hours_since_last_click,
    hours_between(g.signup_ts, s.ts) / 24 AS user_days_since_signup
FROM user_state AS s
JOIN signup AS g USING (uk)
JOIN user_priors AS p ON p.day = CAST(s.ts AS DATE)
WHERE s.ts_requests > 0;
