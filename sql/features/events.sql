-- Everything that happened, as events at the time they happened: an impression at its ts, a
-- click at its click time, a conversion at its conversion time. An event is never dated before
-- its impression (a skewed clock must not leak an outcome into earlier features).
CREATE OR REPLACE TEMP TABLE events AS
SELECT ts, user_id, offer_id, category, partner, position,
       1 AS impressions, 0 AS clicks, 0 AS conversions
FROM base
UNION ALL
SELECT greatest(coalesce(click_ts, conversion_ts, ts), ts), user_id, offer_id, category, partner, position, 0, 1, 0
FROM base WHERE label >= 1
UNION ALL
SELECT greatest(coalesce(conversion_ts, ts), coalesce(click_ts, ts), ts), user_id, offer_id, category, partner,
       position, 0, 0, 1
FROM base WHERE label = 2;
