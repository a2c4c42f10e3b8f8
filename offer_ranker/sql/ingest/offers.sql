-- Offers: check every row, then keep one row per offer_id (the last one: later rows of a
-- catalogue supersede earlier ones). Produces checked_offers and clean_offers.
CREATE OR REPLACE TEMP TABLE checked_offers AS
WITH typed AS (
    SELECT
        _row,
        id_text(offer_id) AS offer_id,
        CAST(partner AS VARCHAR) AS partner,
        CAST(category AS VARCHAR) AS category,
        num(payout) AS payout,
        {{ parse_start_ts }}(start_ts) AS start_ts,
        {{ parse_end_ts }}(end_ts) AS end_ts,
        CASE
            WHEN id_text(offer_id) IS NULL THEN 'null_offer_id'
            WHEN bad_num(payout) THEN 'bad_payout'
            WHEN num(payout) < 0 THEN 'negative_payout'
            WHEN start_ts IS NOT NULL AND {{ parse_start_ts }}(start_ts) IS NULL THEN 'bad_start_ts'
            WHEN end_ts IS NOT NULL AND {{ parse_end_ts }}(end_ts) IS NULL THEN 'bad_end_ts'
            WHEN {{ parse_end_ts }}(end_ts) <= {{ parse_start_ts }}(start_ts) THEN 'end_before_start'
        END AS _reason,
        * EXCLUDE (_row, offer_id, partner, category, payout, start_ts, end_ts)
    FROM {{ view }}
)
SELECT * FROM typed;

CREATE OR REPLACE TEMP VIEW outcomes_offers AS
SELECT _row, _reason FROM checked_offers;

CREATE OR REPLACE TEMP TABLE clean_offers AS
SELECT * EXCLUDE (_reason)
FROM checked_offers
WHERE _reason IS NULL
QUALIFY row_number() OVER (PARTITION BY offer_id ORDER BY _row DESC) = 1;

CREATE OR REPLACE TEMP VIEW flags_offers AS
SELECT CAST(NULL AS VARCHAR) AS flag, CAST(0 AS BIGINT) AS n WHERE false;
