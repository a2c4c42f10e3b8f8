-- Rejected rows exactly as read, with their source row number and the reason; malformed
-- CSV lines keep their text in _raw_line.
COPY (
    SELECT * FROM (
        SELECT r.*, q._reason
        FROM {{ view }} AS r
        JOIN (SELECT _row, _reason FROM outcomes_{{ table }} WHERE _reason IS NOT NULL) AS q USING (_row)
        UNION ALL BY NAME
        SELECT _row, _raw_line, 'malformed_row' AS _reason FROM malformed_{{ table }}
    )
    ORDER BY _row
) TO {{ path }} (FORMAT parquet, COMPRESSION {{ compression }});
