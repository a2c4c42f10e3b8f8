-- The content prior of each offer per day (content_priors, computed by
-- offer_ranker/featurize/content.py and registered by build_features.py; empty without offer
-- text), keyed by the offer's hash: assemble.sql looks it up by (offer, request day).
CREATE OR REPLACE TEMP TABLE f_content AS
SELECT c.day, ids.ok, c.offer_content_ctr
FROM content_priors AS c
JOIN (SELECT ok, any_value(offer_id) AS offer_id FROM base GROUP BY ok) AS ids USING (offer_id);
