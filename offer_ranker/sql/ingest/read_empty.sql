-- Stand in for an optional table that was not provided: no rows, the contract's columns.
CREATE OR REPLACE TEMP VIEW {{ view }} AS
SELECT CAST(NULL AS BIGINT) AS _row {{ missing }}
WHERE false;
