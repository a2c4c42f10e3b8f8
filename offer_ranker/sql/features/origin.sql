-- The time range of the log: t_ref (epoch seconds of the first day's midnight) anchors the
-- decayed counts; last_ts is the end of the history the online snapshot summarises.
SELECT epoch_us(CAST(min(day) AS TIMESTAMP)) / 1e6 AS t_ref, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS n
FROM base;
