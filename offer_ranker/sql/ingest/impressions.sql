-- Impressions: check every row against the contract and the offers catalogue, then keep the
-- first row per (request_id, offer_id).
--
-- checked_impressions is a view: materialising 10M rows of strings costs more than computing
-- the checks again, so only the slim outcome of each row (outcomes_impressions) is stored, and
-- the accepted rows stream from the raw file straight into the output.
-- The offer check applies only when an offers table was given ({{ check_offers }}); an
-- impression of a user missing from a given users table is kept and flagged.
CREATE OR REPLACE TEMP VIEW checked_impressions AS
WITH typed AS (
    SELECT
        r._row,
        id_text(r.request_id) AS request_id,
        {{ parse_ts }}(r.ts) AS ts,
        id_text(r.user_id) AS user_id,
        id_text(r.offer_id) AS offer_id,
        num(r.position) AS _position,
        CAST(r.surface AS VARCHAR) AS surface,
        CAST(r.device AS VARCHAR) AS device,
        CAST(r.country AS VARCHAR) AS country,
        num(r.propensity) AS propensity,
        bad_num(r.propensity) AS _bad_propensity,
        CAST(r.policy AS VARCHAR) AS policy,
        CAST(r.arm AS VARCHAR) AS arm,
        r.* EXCLUDE (_row, request_id, ts, user_id, offer_id, position, surface, device, country,
                     propensity, policy, arm)
    FROM {{ view }} AS r
)
SELECT
    t._row,
    t.request_id,
    t.ts,
    t.user_id,
    t.offer_id,
    TRY_CAST(t._position AS INTEGER) AS position,
    t.* EXCLUDE (_row, request_id, ts, user_id, offer_id, _position, _bad_propensity),
    CASE
        WHEN t.request_id IS NULL THEN 'null_request_id'
        WHEN t.user_id IS NULL THEN 'null_user_id'
        WHEN t.offer_id IS NULL THEN 'null_offer_id'
        WHEN t.ts IS NULL THEN 'bad_ts'
        WHEN t._position IS NULL OR t._position < 1 OR t._position > 10000
             OR t._position != floor(t._position) THEN 'bad_position'
        WHEN t._bad_propensity OR t.propensity <= 0 OR t.propensity > 1 THEN 'bad_propensity'
        WHEN {{ check_offers }} AND o.offer_id IS NULL THEN 'unknown_offer'
    END AS _reason,
    {{ check_users }} AND u.user_id IS NULL AS _flag_unknown_user
FROM typed AS t
LEFT JOIN (SELECT offer_id FROM clean_offers) AS o ON o.offer_id = t.offer_id
LEFT JOIN (SELECT user_id FROM clean_users) AS u ON u.user_id = t.user_id;

-- One slim row per raw row: its outcome, key hash and flag.
CREATE OR REPLACE TEMP TABLE outcomes_impressions AS
SELECT _row, _reason, hash(request_id, offer_id) AS _key, _flag_unknown_user
FROM checked_impressions;

-- Duplicates are the rows of a (request_id, offer_id) after its first. Only valid rows whose
-- key hash repeats can be duplicates, so the exact comparison runs on those few rows instead
-- of a window over every impression.
CREATE OR REPLACE TEMP TABLE duplicate_impressions AS
SELECT _row
FROM checked_impressions
WHERE _row IN (
    SELECT _row FROM outcomes_impressions
    WHERE _reason IS NULL
      AND _key IN (SELECT _key FROM outcomes_impressions WHERE _reason IS NULL
                   GROUP BY _key HAVING count(*) > 1))
QUALIFY row_number() OVER (PARTITION BY request_id, offer_id ORDER BY _row) > 1;

CREATE OR REPLACE TEMP VIEW clean_impressions AS
SELECT * EXCLUDE (_reason)
FROM checked_impressions
WHERE _reason IS NULL AND _row NOT IN (SELECT _row FROM duplicate_impressions);

-- Keys and times of accepted impressions, for the click and conversion checks.
CREATE OR REPLACE TEMP TABLE accepted_impression_keys AS
SELECT request_id, offer_id, ts FROM clean_impressions;

CREATE OR REPLACE TEMP VIEW flags_impressions AS
SELECT 'unknown_user' AS flag, count(*) FILTER (WHERE _flag_unknown_user) AS n
FROM outcomes_impressions
WHERE _reason IS NULL AND _row NOT IN (SELECT _row FROM duplicate_impressions);
