-- Headline figures of the labelled impressions, read back from the file just written (cheaper
-- than evaluating the labelled joins a second time).
SELECT
    count(*) AS impressions,
    count(*) FILTER (WHERE label >= 1) AS clicks,
    count(*) FILTER (WHERE label = 2) AS conversions,
    coalesce(sum(value), 0) AS revenue,
    min(ts) AS first_ts,
    max(ts) AS last_ts
FROM read_parquet({{ path }});
