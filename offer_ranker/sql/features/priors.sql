-- Empirical-Bayes priors, refitted for every day from the events of earlier days only (as a
-- nightly job would), so every feature stays point-in-time. One extra day after the last holds
-- the priors the online snapshot serves with.
--   offer click rate and conversion rate: Beta priors per category (a global one when a category
--     has fewer than {{ min_group }} offers with {{ min_evidence }}+ impressions / clicks),
--   user click rate: one global Beta prior,
--   click rate by screen position, smoothed towards the global offer prior (for clicks over
--     expected clicks).
-- Before anything was seen, the configured fallback prior applies.
-- Every day from the first to the day after the last, gaps included.
CREATE OR REPLACE TEMP TABLE prior_days AS
SELECT CAST(t AS DATE) AS day  -- (not CAST(unnest(...)): Spark runs no generator inside an expression)
FROM (SELECT unnest(generate_series(lo, hi, INTERVAL 1 DAY)) AS t
      FROM (SELECT CAST(min(day) AS TIMESTAMP) AS lo, CAST(max(day) AS TIMESTAMP) + INTERVAL 1 DAY AS hi FROM base));

CREATE OR REPLACE TEMP TABLE offer_before_day AS
WITH daily AS (
    SELECT CAST(ts AS DATE) AS day, ok, any_value(category) AS category,
           sum(impressions) AS impressions, sum(clicks) AS clicks, sum(conversions) AS conversions
    FROM events GROUP BY ALL
)
SELECT d.day, x.ok, any_value(x.category) AS category,
       sum(x.impressions) AS impressions, sum(x.clicks) AS clicks, sum(x.conversions) AS conversions
FROM prior_days AS d JOIN daily AS x ON x.day < d.day
GROUP BY d.day, x.ok;

CREATE OR REPLACE TEMP TABLE offer_fits AS
WITH ctr AS (
    SELECT day, category, grouping(category) = 1 AS is_global, count(*) AS n,
           avg(clicks / impressions) AS mean, var_pop(clicks / impressions) AS variance,
           avg(1 / impressions) AS inv_n
    FROM offer_before_day WHERE impressions >= {{ min_evidence }}
    GROUP BY GROUPING SETS ((day, category), (day))
), cvr AS (
    SELECT day, category, grouping(category) = 1 AS is_global, count(*) AS n,
           avg(conversions / clicks) AS mean, var_pop(conversions / clicks) AS variance,
           avg(1 / clicks) AS inv_n
    FROM offer_before_day WHERE clicks >= {{ min_evidence }}
    GROUP BY GROUPING SETS ((day, category), (day))
)
SELECT 'ctr' AS rate, day, category, is_global, n, mean, beta_strength(mean, variance, inv_n) AS strength FROM ctr
UNION ALL
SELECT 'cvr', day, category, is_global, n, mean, beta_strength(mean, variance, inv_n) FROM cvr;

-- One row per (day, category); category '' stands for offers without one and always exists,
-- so the snapshot carries the global prior for offers it has never seen.
CREATE OR REPLACE TEMP TABLE offer_priors AS
WITH keys AS (SELECT DISTINCT coalesce(category, '') AS category_key FROM base UNION SELECT ''),
fit AS (SELECT * FROM offer_fits WHERE n >= {{ min_group }})
SELECT
    d.day, k.category_key,
    coalesce(cc.mean, gc.mean, {{ fallback_ctr }}) AS ctr_mean,
    coalesce(cc.strength, gc.strength, {{ fallback_strength }}) AS ctr_strength,
    coalesce(cv.mean, gv.mean, {{ fallback_cvr }}) AS cvr_mean,
    coalesce(cv.strength, gv.strength, {{ fallback_strength }}) AS cvr_strength
FROM prior_days AS d CROSS JOIN keys AS k
LEFT JOIN fit AS cc ON cc.rate = 'ctr' AND NOT cc.is_global AND cc.day = d.day AND cc.category = k.category_key
LEFT JOIN fit AS gc ON gc.rate = 'ctr' AND gc.is_global AND gc.day = d.day
LEFT JOIN fit AS cv ON cv.rate = 'cvr' AND NOT cv.is_global AND cv.day = d.day AND cv.category = k.category_key
LEFT JOIN fit AS gv ON gv.rate = 'cvr' AND gv.is_global AND gv.day = d.day;

CREATE OR REPLACE TEMP TABLE user_priors AS
WITH daily AS (
    SELECT CAST(ts AS DATE) AS day, uk, sum(impressions) AS impressions, sum(clicks) AS clicks
    FROM events GROUP BY ALL
), before AS (
    SELECT d.day, x.uk, sum(x.impressions) AS impressions, sum(x.clicks) AS clicks
    FROM prior_days AS d JOIN daily AS x ON x.day < d.day
    GROUP BY d.day, x.uk
), fit AS (
    SELECT day, count(*) AS n, avg(clicks / impressions) AS mean, var_pop(clicks / impressions) AS variance,
           avg(1 / impressions) AS inv_n
    FROM before WHERE impressions >= {{ min_evidence }} GROUP BY day
)
SELECT d.day,
       coalesce(f.mean, {{ fallback_ctr }}) AS mean,
       coalesce(beta_strength(f.mean, f.variance, f.inv_n), {{ fallback_strength }}) AS strength
FROM prior_days AS d LEFT JOIN fit AS f ON f.day = d.day AND f.n >= {{ min_group }};

CREATE OR REPLACE TEMP TABLE position_ctr AS
WITH daily AS (
    SELECT CAST(ts AS DATE) AS day, position, sum(impressions) AS impressions, sum(clicks) AS clicks
    FROM events GROUP BY ALL
), positions AS (SELECT DISTINCT position FROM base)
SELECT d.day, p.position,
       smoothed(coalesce(sum(x.clicks), 0), coalesce(sum(x.impressions), 0),
                coalesce(any_value(g.mean), {{ fallback_ctr }}), coalesce(any_value(g.strength), {{ fallback_strength }})) AS ctr
FROM prior_days AS d CROSS JOIN positions AS p
LEFT JOIN daily AS x ON x.day < d.day AND x.position = p.position
LEFT JOIN (SELECT day, mean, strength FROM offer_fits WHERE rate = 'ctr' AND is_global AND n >= {{ min_group }}) AS g
    ON g.day = d.day
GROUP BY d.day, p.position;
