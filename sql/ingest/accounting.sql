-- Where every raw row of one table went: read, valid, accepted, flags, and quarantined by reason.
SELECT 'read' AS outcome, NULL AS reason, count(*) AS n FROM {{ view }}
UNION ALL
SELECT 'valid', NULL, count(*) FROM checked_{{ table }} WHERE _reason IS NULL
UNION ALL
SELECT 'accepted', NULL, count(*) FROM clean_{{ table }}
UNION ALL
SELECT 'quarantined', _reason, count(*) FROM checked_{{ table }} WHERE _reason IS NOT NULL GROUP BY _reason
UNION ALL
SELECT 'flagged', flag, n FROM flags_{{ table }};
