-- Session settings and shared macros for ingest. Run once per connection, before any table.

-- Timestamps without an offset are UTC.
SET TimeZone = 'UTC';
-- Progress is shown by the CLI; DuckDB's own bar would write to stdout.
SET enable_progress_bar = false;
--
-- Timestamps become naive UTC. ingest.py picks the macro from the source column's type:
-- text goes through TIMESTAMPTZ so offsets such as "Z" and "+02:00" are honoured (text with
-- no offset is read as UTC, the session time zone); epoch_us avoids a slow ICU conversion.
CREATE OR REPLACE TEMP MACRO ts_from_timestamp(x) AS CAST(x AS TIMESTAMP);
CREATE OR REPLACE TEMP MACRO ts_from_timestamptz(x) AS make_timestamp(epoch_us(x));
CREATE OR REPLACE TEMP MACRO ts_from_text(x) AS make_timestamp(epoch_us(TRY_CAST(x AS TIMESTAMPTZ)));

-- Ids are text; empty or blank ids count as missing.
CREATE OR REPLACE TEMP MACRO id_text(x) AS
    CASE WHEN x IS NULL OR trim(CAST(x AS VARCHAR)) = '' THEN NULL ELSE CAST(x AS VARCHAR) END;

-- A number that was given but cannot be read, or is NaN/inf, is "bad"; a missing one is not.
CREATE OR REPLACE TEMP MACRO num(x) AS TRY_CAST(x AS DOUBLE);
CREATE OR REPLACE TEMP MACRO bad_num(x) AS
    x IS NOT NULL AND (num(x) IS NULL OR isnan(num(x)) OR isinf(num(x)));
