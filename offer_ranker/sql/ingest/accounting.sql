-- Where every raw row of one table went: read, valid (passed the checks), accepted (rows in the
-- written output file), flags, and quarantined by reason. duplicates = valid - accepted.
SELECT 'read' AS outcome, NULL AS reason, count(*) AS n FROM {{ view }}
UNION ALL
SELECT 'read', NULL, count(*) FROM malformed_{{ table }}
UNION ALL
SELECT 'quarantined', 'malformed_row', count(*) FROM malformed_{{ table }} HAVING count(*) > 0
UNION ALL
SELECT 'valid', NULL, count(*) FROM outcomes_{{ table }} WHERE _reason IS NULL
UNION ALL
SELECT 'accepted', NULL, count(*) FROM read_parquet({{ output }})
UNION ALL
SELECT 'quarantined', _reason, count(*) FROM outcomes_{{ table }} WHERE _reason IS NOT NULL GROUP BY _reason
UNION ALL
SELECT 'flagged', flag, n FROM flags_{{ table }};
