-- Headline figures of the labelled impressions table.
SELECT
    count(*) AS impressions,
    count(DISTINCT request_id) AS requests,
    count(DISTINCT user_id) AS users,
    count(DISTINCT offer_id) AS offers,
    count(*) FILTER (WHERE label >= 1) AS clicks,
    count(*) FILTER (WHERE label = 2) AS conversions,
    coalesce(sum(value), 0) AS revenue,
    min(ts) AS first_ts,
    max(ts) AS last_ts
FROM labelled_impressions;
