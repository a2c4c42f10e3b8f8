-- How the offer compares with the other offers on the same page. Needs f_offer_history.
CREATE OR REPLACE TEMP TABLE f_listwise AS
SELECT
    b._i,
    CAST(count(*) OVER r AS DOUBLE) AS lw_candidates,
    b.payout / nullif(avg(b.payout) OVER r, 0) AS lw_payout_rel,
    h.offer_ctr / nullif(avg(h.offer_ctr) OVER r, 0) AS lw_ctr_rel
FROM base AS b
JOIN f_offer_history AS h USING (_i)
WINDOW r AS (PARTITION BY b._r);
