-- The page view's context. Per-impression expressions over base columns; assemble.sql applies them.
CREATE OR REPLACE TEMP MACRO ctx_hour(ts) AS CAST(hour(ts) AS DOUBLE);
CREATE OR REPLACE TEMP MACRO ctx_weekday(ts) AS CAST(dayofweek(ts) AS DOUBLE);
CREATE OR REPLACE TEMP MACRO ctx_device(device) AS device;
CREATE OR REPLACE TEMP MACRO ctx_country(country) AS country;
CREATE OR REPLACE TEMP MACRO ctx_surface(surface) AS surface;
