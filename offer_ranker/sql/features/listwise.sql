-- How the offer compares with the other offers on the same page. Needs f_offer_history.
-- The page's candidates and means, one row per request; assemble.sql applies the macros below
-- to each impression.
CREATE OR REPLACE TEMP TABLE f_listwise AS
SELECT b._r, count(*) AS candidates, avg(b.payout) AS payout_mean, avg(h.offer_ctr) AS ctr_mean
FROM base AS b
JOIN f_offer_history AS h ON h.ok = b.ok AND h.ts = b.ts
GROUP BY b._r;

CREATE OR REPLACE TEMP MACRO lw_candidates(candidates) AS CAST(candidates AS DOUBLE);
CREATE OR REPLACE TEMP MACRO lw_payout_rel(payout, payout_mean) AS payout / nullif(payout_mean, 0);
CREATE OR REPLACE TEMP MACRO lw_ctr_rel(offer_ctr, ctr_mean) AS offer_ctr / nullif(ctr_mean, 0);
