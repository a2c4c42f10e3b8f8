-- The online snapshot: the state of every offer, user, user×category, user×partner and
-- user×offer from the events strictly before {{ as_of }}, with the catalogue attributes and the
-- priors of day {{ prior_day }}. Decayed counts are stored as their running sums scaled by
-- exp((t_event - t_ref) / tau), exactly as the offline features use them; the online path
-- decays them to the request time the same way. States are keyed by id hashes (see base.sql);
-- the ids come back through the key -> id maps of base.
COPY (
    WITH s AS (
        SELECT ids.offer_id,
               max_by(impressions, ts) AS impressions, max_by(clicks, ts) AS clicks,
               max_by(conversions, ts) AS conversions, max_by(expected_clicks, ts) AS expected_clicks,
               max_by(impressions_scaled, ts) AS impressions_scaled, max_by(clicks_scaled, ts) AS clicks_scaled
        FROM offer_state
        JOIN (SELECT ok, any_value(offer_id) AS offer_id FROM base GROUP BY ok) AS ids USING (ok)
        WHERE ts < {{ as_of }} GROUP BY ids.offer_id
    ), catalogue AS (  -- every offer of the catalogue, shown yet or not (cold start)
        SELECT offer_id, category, partner, payout, start_ts, end_ts {{ offer_extras }}
        FROM read_parquet({{ offers }})
    )
    SELECT coalesce(c.offer_id, s.offer_id) AS offer_id,
           c.* EXCLUDE (offer_id),
           coalesce(s.impressions, 0) AS impressions, coalesce(s.clicks, 0) AS clicks,
           coalesce(s.conversions, 0) AS conversions, coalesce(s.expected_clicks, 0) AS expected_clicks,
           coalesce(s.impressions_scaled, 0) AS impressions_scaled, coalesce(s.clicks_scaled, 0) AS clicks_scaled
    FROM catalogue AS c FULL JOIN s USING (offer_id)
    ORDER BY offer_id
) TO {{ offers_path }} (FORMAT parquet, COMPRESSION zstd);

COPY (
    WITH s AS (
        SELECT ids.user_id,
               max_by(requests, ts) AS requests, max_by(impressions, ts) AS impressions,
               max_by(clicks, ts) AS clicks, max_by(conversions, ts) AS conversions,
               max_by(last_visit, ts) AS last_visit, max_by(last_click, ts) AS last_click
        FROM user_state
        JOIN (SELECT uk, any_value(user_id) AS user_id FROM base GROUP BY uk) AS ids USING (uk)
        WHERE ts < {{ as_of }} GROUP BY ids.user_id
    ), attributes AS (  -- every user of the users table, seen yet or not
        SELECT user_id, signup_ts {{ user_extras }} FROM read_parquet({{ users }})
    )
    SELECT coalesce(a.user_id, s.user_id) AS user_id, a.* EXCLUDE (user_id),
           coalesce(s.requests, 0) AS requests, coalesce(s.impressions, 0) AS impressions,
           coalesce(s.clicks, 0) AS clicks, coalesce(s.conversions, 0) AS conversions,
           s.last_visit, s.last_click
    FROM attributes AS a FULL JOIN s USING (user_id)
    ORDER BY user_id
) TO {{ users_path }} (FORMAT parquet, COMPRESSION zstd);

COPY (
    SELECT ids.user_id, ids.category, max_by(impressions, ts) AS impressions, max_by(clicks, ts) AS clicks
    FROM user_category_state
    JOIN (SELECT uck, any_value(user_id) AS user_id, any_value(category) AS category
          FROM base WHERE category IS NOT NULL GROUP BY uck) AS ids USING (uck)
    WHERE ts < {{ as_of }} GROUP BY ids.user_id, ids.category ORDER BY user_id, category
) TO {{ user_category_path }} (FORMAT parquet, COMPRESSION zstd);

COPY (
    SELECT ids.user_id, ids.partner, max_by(impressions, ts) AS impressions, max_by(clicks, ts) AS clicks,
           max_by(conversions, ts) AS conversions
    FROM user_partner_state
    JOIN (SELECT upk, any_value(user_id) AS user_id, any_value(partner) AS partner
          FROM base WHERE upk IS NOT NULL GROUP BY upk) AS ids USING (upk)
    WHERE ts < {{ as_of }} GROUP BY ids.user_id, ids.partner ORDER BY user_id, partner
) TO {{ user_partner_path }} (FORMAT parquet, COMPRESSION zstd);

COPY (
    SELECT ids.user_id, ids.offer_id, max_by(impressions, ts) AS impressions, max_by(clicks, ts) AS clicks,
           max_by(conversions, ts) AS conversions, max_by(last_seen, ts) AS last_seen
    FROM user_offer_state
    JOIN (SELECT uok, any_value(user_id) AS user_id, any_value(offer_id) AS offer_id FROM base GROUP BY uok) AS ids
        USING (uok)
    WHERE ts < {{ as_of }} GROUP BY ids.user_id, ids.offer_id ORDER BY user_id, offer_id
) TO {{ user_offer_path }} (FORMAT parquet, COMPRESSION zstd);

COPY (
    SELECT 'offer' AS kind, category_key AS key, ctr_mean, ctr_strength, cvr_mean, cvr_strength
    FROM offer_priors WHERE day = {{ prior_day }}
    UNION ALL
    SELECT 'user', NULL, mean, strength, NULL, NULL FROM user_priors WHERE day = {{ prior_day }}
    UNION ALL
    SELECT 'position', CAST(position AS VARCHAR), ctr, NULL, NULL, NULL FROM position_ctr WHERE day = {{ prior_day }}
) TO {{ priors_path }} (FORMAT parquet);
