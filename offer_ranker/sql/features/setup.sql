-- Session settings and shared macros for the feature pipeline.
SET TimeZone = 'UTC';
SET enable_progress_bar = false;
-- Bounded memory: beyond the limit DuckDB spills to the staging folder.
SET memory_limit = {{ memory_limit }};
SET temp_directory = {{ temp_dir }};

-- Method-of-moments strength (alpha + beta) of a Beta prior from observed rates: the spread of
-- the true rates is the observed variance minus the binomial noise mean*(1-mean)*E[1/n].
-- NULL when there is nothing to fit (so a fallback can apply); capped when the observed spread
-- is no larger than the noise (the rates look identical).
CREATE OR REPLACE TEMP MACRO beta_strength(mean, variance, inv_n) AS
    CASE WHEN mean IS NULL THEN NULL
         WHEN variance - mean * (1 - mean) * inv_n > 0
         THEN least(greatest(mean * (1 - mean) / (variance - mean * (1 - mean) * inv_n) - 1, 2.0), 10000.0)
         ELSE 10000.0 END;

-- A rate smoothed towards a prior mean with a prior strength (pseudo-trials).
CREATE OR REPLACE TEMP MACRO smoothed(successes, trials, mean, strength) AS
    (successes + mean * strength) / (trials + strength);

-- Hours between two timestamps.
CREATE OR REPLACE TEMP MACRO hours_between(a, b) AS (epoch_us(b) - epoch_us(a)) / 3.6e9;
