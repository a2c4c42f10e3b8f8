-- Crossed categoricals (features/crosses.py): a segment of the page view or of the user paired
-- with the offer's category, e.g. 'ios × finance'; NULL when either side is NULL. assemble.sql
-- applies the macro to the assembled feature columns (the crosses listed by
-- build_features.py); a numeric segment would read as DuckDB writes a DOUBLE ('13.0').
CREATE OR REPLACE TEMP MACRO category_by(segment, category) AS CAST(segment AS VARCHAR) || ' × ' || category;
