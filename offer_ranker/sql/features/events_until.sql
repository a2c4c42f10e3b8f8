-- The time of the last event the pipeline saw (an impression, click or conversion): a snapshot
-- without an as_of time counts every event up to it, and the online stores replay their own
-- journals from just after it.
SELECT max(ts) FROM events;
