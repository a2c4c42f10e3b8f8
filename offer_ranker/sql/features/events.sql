-- Everything that happened, as events at the time they happened: an impression at its ts, a
-- click at its click time, a conversion at its conversion time. An event is never dated before
-- its impression (a skewed clock must not leak an outcome into earlier features).
CREATE OR REPLACE TEMP TABLE events AS
WITH e AS (
    SELECT ts, ts AS t_click, ts AS t_conversion, label,
           greatest(coalesce(click_ts, conversion_ts, ts), ts) AS click_time,
           greatest(coalesce(conversion_ts, ts), coalesce(click_ts, ts), ts) AS conversion_time,
           uk, ok, uck, upk, uok, category, position
    FROM base
)
SELECT ts, uk, ok, uck, upk, uok, category, position, 1 AS impressions, 0 AS clicks, 0 AS conversions FROM e
UNION ALL
SELECT click_time, uk, ok, uck, upk, uok, category, position, 0, 1, 0 FROM e WHERE label >= 1
UNION ALL
SELECT conversion_time, uk, ok, uck, upk, uok, category, position, 0, 0, 1 FROM e WHERE label = 2;
