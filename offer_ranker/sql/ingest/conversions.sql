-- Conversions: check every row, quarantine conversions on no accepted impression, keep the
-- earliest per (request_id, offer_id). A conversion with no click is kept and flagged
-- (_flag_without_click): the click may simply not have been logged.
CREATE OR REPLACE TEMP TABLE checked_conversions AS
SELECT
    r._row,
    id_text(r.request_id) AS request_id,
    id_text(r.offer_id) AS offer_id,
    {{ parse_ts }}(r.ts) AS ts,
    num(r.value) AS value,
    CASE
        WHEN id_text(r.request_id) IS NULL THEN 'null_request_id'
        WHEN id_text(r.offer_id) IS NULL THEN 'null_offer_id'
        WHEN {{ parse_ts }}(r.ts) IS NULL THEN 'bad_ts'
        WHEN bad_num(r.value) THEN 'bad_value'
        WHEN num(r.value) < 0 THEN 'negative_value'
        WHEN i.request_id IS NULL THEN 'no_impression'
    END AS _reason,
    c.request_id IS NULL AS _flag_without_click,
    {{ parse_ts }}(r.ts) < i.ts AS _flag_before_impression,
    r.* EXCLUDE (_row, request_id, offer_id, ts, value)
FROM {{ view }} AS r
LEFT JOIN (SELECT request_id, offer_id, ts FROM accepted_impression_keys) AS i
    ON i.request_id = id_text(r.request_id) AND i.offer_id = id_text(r.offer_id)
LEFT JOIN (SELECT request_id, offer_id FROM clean_clicks) AS c
    ON c.request_id = id_text(r.request_id) AND c.offer_id = id_text(r.offer_id);

CREATE OR REPLACE TEMP VIEW outcomes_conversions AS
SELECT _row, _reason FROM checked_conversions;

CREATE OR REPLACE TEMP TABLE clean_conversions AS
SELECT * EXCLUDE (_reason)
FROM checked_conversions
WHERE _reason IS NULL
QUALIFY row_number() OVER (PARTITION BY request_id, offer_id ORDER BY ts, _row) = 1;

CREATE OR REPLACE TEMP VIEW flags_conversions AS
SELECT 'without_click' AS flag, count(*) FILTER (WHERE _flag_without_click) AS n FROM clean_conversions
UNION ALL
SELECT 'before_impression', count(*) FILTER (WHERE _flag_before_impression) FROM clean_conversions;
