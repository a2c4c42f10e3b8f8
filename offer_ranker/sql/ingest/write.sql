-- Write one accepted relation as Parquet, without the internal _row and _flag_* columns
-- (the caller stages the path and renames it into place).
COPY (
    SELECT COLUMNS(lambda c: c != '_row' AND NOT starts_with(c, '_flag_')) FROM {{ relation }}
) TO {{ path }} (FORMAT parquet, COMPRESSION {{ compression }});
