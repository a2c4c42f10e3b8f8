-- Load a raw CSV file as raw_<table>, with _row = its 1-based data row (line _row + 1).
-- Contract columns are read as text and checked by the table's SQL; other columns keep
-- DuckDB's detected type so numeric extras stay numeric.
CREATE OR REPLACE TEMP TABLE {{ view }} AS
SELECT row_number() OVER () AS _row, * {{ missing }}
FROM read_csv({{ path }}, header = true, nullstr = {{ nulls }}, types = {{ types }},
              sample_size = -1, strict_mode = false, null_padding = true);
