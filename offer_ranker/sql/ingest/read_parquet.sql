-- Expose a raw Parquet file as raw_<table>, with _row = its 1-based row number in the file.
-- {{ missing }} adds the contract's optional columns the file lacks, as NULLs.
CREATE OR REPLACE TEMP VIEW {{ view }} AS
SELECT file_row_number + 1 AS _row, * EXCLUDE (file_row_number) {{ missing }}
FROM read_parquet({{ path }}, file_row_number = true);
