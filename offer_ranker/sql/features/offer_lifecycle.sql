-- Where the offer is in its life at the time of the impression, and its catalogue attributes.
-- Per-impression expressions over base columns; assemble.sql applies them.
CREATE OR REPLACE TEMP MACRO offer_age_hours(start_ts, ts) AS hours_between(start_ts, ts);
CREATE OR REPLACE TEMP MACRO offer_hours_to_expiry(ts, end_ts) AS hours_between(ts, end_ts);
CREATE OR REPLACE TEMP MACRO offer_payout(payout) AS CAST(payout AS DOUBLE);
CREATE OR REPLACE TEMP MACRO offer_category(category) AS category;
CREATE OR REPLACE TEMP MACRO offer_partner(partner) AS partner;
