-- Parquet files and absent tables have no malformed lines.
CREATE OR REPLACE TEMP TABLE malformed_{{ table }} (_row BIGINT, _raw_line VARCHAR);
