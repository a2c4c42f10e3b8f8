-- The page view's context.
CREATE OR REPLACE TEMP TABLE f_context AS
SELECT
    _i,
    CAST(hour(ts) AS DOUBLE) AS ctx_hour,
    CAST(dayofweek(ts) AS DOUBLE) AS ctx_weekday,
    device AS ctx_device,
    country AS ctx_country,
    surface AS ctx_surface
FROM base;
