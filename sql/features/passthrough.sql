-- Extra raw columns, used as they are ({{ columns }} is built from the manifest's pass-through list).
CREATE OR REPLACE TEMP TABLE f_passthrough AS
SELECT _i {{ columns }} FROM base;
