-- Load a raw CSV file as raw_<table>, with _row = its 1-based data row (line _row + 1).
-- Contract columns are read as text and checked by the table's SQL; other columns keep
-- DuckDB's detected type so numeric extras stay numeric. Lines that do not split into the
-- header's columns (too many or too few fields) go to malformed_<table> with their text,
-- and are quarantined as malformed_row.
CREATE OR REPLACE TEMP TABLE {{ view }}_read AS
SELECT row_number() OVER () AS _k, * {{ missing }}
FROM read_csv({{ path }}, header = true, delim = ',', quote = '"', escape = '"', nullstr = {{ nulls }},
              types = {{ types }}, sample_size = -1, null_padding = false,
              store_rejects = true, rejects_table = 'rejects_{{ table }}', rejects_scan = 'reject_scans_{{ table }}');

CREATE OR REPLACE TEMP TABLE malformed_{{ table }} AS
SELECT CAST(line - 1 AS BIGINT) AS _row, any_value(csv_line) AS _raw_line
FROM rejects_{{ table }}
GROUP BY line;

-- The k-th good line's data row is k plus the malformed rows before it. Malformed row R_j
-- (j-th in order) comes after R_j - j good rows, so good row k follows every R_j with
-- R_j - j <= k - 1.
CREATE OR REPLACE TEMP TABLE {{ view }} AS
WITH steps AS (
    SELECT good_before, max(j) AS skipped
    FROM (SELECT _row - row_number() OVER (ORDER BY _row) AS good_before, row_number() OVER (ORDER BY _row) AS j
          FROM malformed_{{ table }})
    GROUP BY good_before
)
SELECT r._k + coalesce(s.skipped, 0) AS _row, r.* EXCLUDE (_k)
FROM {{ view }}_read AS r
ASOF LEFT JOIN steps AS s ON r._k - 1 >= s.good_before;
