-- What the content prior (offer_ranker/featurize/content.py) learns from on each day: every
-- offer's impressions and clicks from the events before the day (offer_before_day of priors.sql).
SELECT h.day, ids.offer_id, CAST(h.impressions AS DOUBLE) AS impressions, CAST(h.clicks AS DOUBLE) AS clicks
FROM offer_before_day AS h
JOIN (SELECT ok, any_value(offer_id) AS offer_id FROM base GROUP BY ok) AS ids USING (ok);
