-- Offer history before each impression: lifetime counts, decayed recent counts, smoothed click
-- and conversion rates, and clicks over the clicks its screen positions would predict.
-- Decayed counts: sum of exp(-(t - t_event) / tau) over earlier events, computed as
-- exp(-(t - t_ref) / tau) * running sum of exp((t_event - t_ref) / tau).
--
-- One row per (offer, request ts), looked up by assemble.sql: the history strictly before ts is
-- the running total at ts minus the events at ts (no as-of join per impression).
CREATE OR REPLACE TEMP TABLE f_offer_history AS
WITH per_ts AS (
    SELECT e.ok, e.ts, any_value(e.category) AS category,
           sum(e.impressions) AS impressions, sum(e.clicks) AS clicks, sum(e.conversions) AS conversions,
           sum(CASE WHEN e.impressions = 1 THEN p.ctr ELSE 0 END) AS expected_clicks
    FROM events AS e
    LEFT JOIN position_ctr AS p ON p.day = CAST(e.ts AS DATE) AND p.position = e.position
    GROUP BY e.ok, e.ts
), scaled AS (
    SELECT *, exp((epoch_us(ts) / 1e6 - {{ t_ref }}) / {{ tau }}) AS scale FROM per_ts
), s AS (
    SELECT ok, ts, CAST(ts AS DATE) AS day, coalesce(category, '') AS category_key, impressions AS ts_impressions,
           sum(impressions) OVER w - impressions AS impressions,
           sum(clicks) OVER w - clicks AS clicks,
           sum(conversions) OVER w - conversions AS conversions,
           sum(expected_clicks) OVER w - expected_clicks AS expected_clicks,
           (sum(impressions * scale) OVER w - impressions * scale)
               * exp(({{ t_ref }} - epoch_us(ts) / 1e6) / {{ tau }}) AS impressions_recent,
           (sum(clicks * scale) OVER w - clicks * scale)
               * exp(({{ t_ref }} - epoch_us(ts) / 1e6) / {{ tau }}) AS clicks_recent
    FROM scaled
    -- (key, ts) is unique here, so the default RANGE frame is the running total; it is
    -- about twice as fast as ROWS in DuckDB for several aggregates over large partitions.
    WINDOW w AS (PARTITION BY ok ORDER BY ts)
)
SELECT
    s.ok, s.ts,
    CAST(s.impressions AS DOUBLE) AS offer_impressions,
    CAST(s.clicks AS DOUBLE) AS offer_clicks,
    CAST(s.conversions AS DOUBLE) AS offer_conversions,
    s.impressions_recent AS offer_impressions_recent,
    s.clicks_recent AS offer_clicks_recent,
    smoothed(s.clicks, s.impressions, p.ctr_mean, p.ctr_strength) AS offer_ctr,
    smoothed(s.clicks_recent, s.impressions_recent, p.ctr_mean, p.ctr_strength) AS offer_ctr_recent,
    smoothed(s.conversions, s.clicks, p.cvr_mean, p.cvr_strength) AS offer_cvr,
    -- shrunk towards 1 with the prior's weight in clicks
    (s.clicks + p.ctr_mean * p.ctr_strength) / (s.expected_clicks + p.ctr_mean * p.ctr_strength) AS offer_coec
FROM s
JOIN offer_priors AS p ON p.day = s.day AND p.category_key = s.category_key
WHERE s.ts_impressions > 0;
