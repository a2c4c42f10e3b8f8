-- Rejected rows exactly as read, with their source row number and the reason.
COPY (
    SELECT r.*, q._reason
    FROM {{ view }} AS r
    JOIN (SELECT _row, _reason FROM outcomes_{{ table }} WHERE _reason IS NOT NULL) AS q USING (_row)
    ORDER BY r._row
) TO {{ path }} (FORMAT parquet, COMPRESSION {{ compression }});
