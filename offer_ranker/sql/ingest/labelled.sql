-- The labelled impressions table: one row per accepted impression with its outcome.
-- label: 0 no click, 1 click, 2 conversion. value: the conversion's value, else the offer's
-- payout, for converted impressions; 0 otherwise. click_ts / conversion_ts keep the event times
-- so features can use each event only after it happened.
CREATE OR REPLACE TEMP VIEW labelled_impressions AS
SELECT
    i.* EXCLUDE (_row),
    c.ts AS click_ts,
    v.ts AS conversion_ts,
    CAST(CASE WHEN v.request_id IS NOT NULL THEN 2
              WHEN c.request_id IS NOT NULL THEN 1
              ELSE 0 END AS TINYINT) AS label,
    CASE WHEN v.request_id IS NOT NULL THEN coalesce(v.value, o.payout, 0.0) ELSE 0.0 END AS value
FROM clean_impressions AS i
LEFT JOIN clean_clicks AS c USING (request_id, offer_id)
LEFT JOIN clean_conversions AS v USING (request_id, offer_id)
LEFT JOIN (SELECT offer_id, payout FROM clean_offers) AS o USING (offer_id);
