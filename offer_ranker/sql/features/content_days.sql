-- The days the content prior is computed for: those of the priors (priors.sql), in order.
SELECT day FROM prior_days ORDER BY day;
