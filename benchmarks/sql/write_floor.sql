-- Floor for bench_features.py: writing the training frame alone. The frame build_features just
-- produced is loaded into memory first (not timed), then written again with the same order and
-- codec as assemble.sql: no feature pipeline can finish faster than its own output is written.
SET preserve_insertion_order = false;
CREATE TEMP TABLE frame AS FROM read_parquet({{ frame }});
