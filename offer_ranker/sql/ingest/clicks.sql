-- Clicks: check every row, quarantine clicks on no accepted impression, keep the earliest
-- click per (request_id, offer_id). Produces checked_clicks and clean_clicks.
CREATE OR REPLACE TEMP TABLE checked_clicks AS
SELECT
    r._row,
    id_text(r.request_id) AS request_id,
    id_text(r.offer_id) AS offer_id,
    {{ parse_ts }}(r.ts) AS ts,
    CASE
        WHEN id_text(r.request_id) IS NULL THEN 'null_request_id'
        WHEN id_text(r.offer_id) IS NULL THEN 'null_offer_id'
        WHEN {{ parse_ts }}(r.ts) IS NULL THEN 'bad_ts'
        WHEN i.request_id IS NULL THEN 'no_impression'
    END AS _reason,
    {{ parse_ts }}(r.ts) < i.ts AS _flag_before_impression,
    r.* EXCLUDE (_row, request_id, offer_id, ts)
FROM {{ view }} AS r
LEFT JOIN (SELECT request_id, offer_id, ts FROM accepted_impression_keys) AS i
    ON i.request_id = id_text(r.request_id) AND i.offer_id = id_text(r.offer_id);

CREATE OR REPLACE TEMP VIEW outcomes_clicks AS
SELECT _row, _reason FROM checked_clicks;

CREATE OR REPLACE TEMP TABLE clean_clicks AS
SELECT * EXCLUDE (_reason)
FROM checked_clicks
WHERE _reason IS NULL
QUALIFY row_number() OVER (PARTITION BY request_id, offer_id ORDER BY ts, _row) = 1;

CREATE OR REPLACE TEMP VIEW flags_clicks AS
SELECT 'before_impression' AS flag, count(*) FILTER (WHERE _flag_before_impression) AS n FROM clean_clicks;
