-- Users: check every row, keep the last row per user_id. Produces checked_users, clean_users.
CREATE OR REPLACE TEMP TABLE checked_users AS
SELECT
    _row,
    id_text(user_id) AS user_id,
    {{ parse_signup_ts }}(signup_ts) AS signup_ts,
    CASE
        WHEN id_text(user_id) IS NULL THEN 'null_user_id'
        WHEN signup_ts IS NOT NULL AND {{ parse_signup_ts }}(signup_ts) IS NULL THEN 'bad_signup_ts'
    END AS _reason,
    * EXCLUDE (_row, user_id, signup_ts)
FROM {{ view }};

CREATE OR REPLACE TEMP VIEW outcomes_users AS
SELECT _row, _reason FROM checked_users;

CREATE OR REPLACE TEMP TABLE clean_users AS
SELECT * EXCLUDE (_reason)
FROM checked_users
WHERE _reason IS NULL
QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY _row DESC) = 1;

CREATE OR REPLACE TEMP VIEW flags_users AS
SELECT CAST(NULL AS VARCHAR) AS flag, CAST(0 AS BIGINT) AS n WHERE false;
