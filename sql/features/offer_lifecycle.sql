-- Where the offer is in its life at the time of the impression, and its catalogue attributes.
CREATE OR REPLACE TEMP TABLE f_offer_lifecycle AS
SELECT
    _i,
    hours_between(start_ts, ts) AS offer_age_hours,
    hours_between(ts, end_ts) AS offer_hours_to_expiry,
    CAST(payout AS DOUBLE) AS offer_payout,
    category AS offer_category,
    partner AS offer_partner
FROM base;
