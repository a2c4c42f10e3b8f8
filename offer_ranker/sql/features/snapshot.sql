-- The online snapshot: the state of every offer, user, user×category, user×partner and
-- user×offer from the events strictly before {{ as_of }}, with the catalogue attributes and the
-- priors of day {{ prior_day }} (the offers' content prior among them: content_ctr). Decayed
-- counts are stored as their running sums scaled by exp((t_event - t_ref) / tau), exactly as
-- the offline features use them; the online path decays them to the request time the same way. Offer and pair states are the sums of their
-- events before {{ as_of }}, user states the last running totals of user_state before it; both
-- are grouped on the id hashes (see base.sql) and the ids come back through key -> id maps.
-- Counts are written as DOUBLE, whatever integer type an engine's sum has.
CREATE OR REPLACE TEMP TABLE snapshot_users AS SELECT uk, any_value(user_id) AS user_id FROM base GROUP BY uk;
CREATE OR REPLACE TEMP TABLE snapshot_offers AS
SELECT ok, any_value(offer_id) AS offer_id, any_value(partner) AS partner FROM base GROUP BY ok;

COPY (
    WITH s AS (
        SELECT ids.offer_id,
               sum(e.impressions) AS impressions, sum(e.clicks) AS clicks, sum(e.conversions) AS conversions,
               sum(CASE WHEN e.impressions = 1 THEN p.ctr ELSE 0 END) AS expected_clicks,
               sum(e.impressions * exp((epoch_us(e.ts) / 1e6 - {{ t_ref }}) / {{ tau }})) AS impressions_scaled,
               sum(e.clicks * exp((epoch_us(e.ts) / 1e6 - {{ t_ref }}) / {{ tau }})) AS clicks_scaled
        FROM events AS e
        LEFT JOIN position_ctr AS p ON p.day = CAST(e.ts AS DATE) AND p.position = e.position
        JOIN snapshot_offers AS ids USING (ok)
        WHERE e.ts < {{ as_of }} GROUP BY ids.offer_id
    ), catalogue AS (  -- every offer of the catalogue, shown yet or not (cold start)
        SELECT offer_id, category, partner, payout, start_ts, end_ts {{ offer_extras }}
        FROM read_parquet({{ offers }})
    )
    SELECT coalesce(c.offer_id, s.offer_id) AS offer_id,
           c.* EXCLUDE (offer_id), cp.offer_content_ctr AS content_ctr,
           CAST(coalesce(s.impressions, 0) AS DOUBLE) AS impressions, CAST(coalesce(s.clicks, 0) AS DOUBLE) AS clicks,
           CAST(coalesce(s.conversions, 0) AS DOUBLE) AS conversions, coalesce(s.expected_clicks, 0) AS expected_clicks,
           coalesce(s.impressions_scaled, 0) AS impressions_scaled, coalesce(s.clicks_scaled, 0) AS clicks_scaled
    FROM catalogue AS c FULL JOIN s USING (offer_id)
    LEFT JOIN content_priors AS cp ON cp.offer_id = coalesce(c.offer_id, s.offer_id) AND cp.day = {{ prior_day }}
    ORDER BY offer_id
) TO {{ offers_path }} (FORMAT parquet, COMPRESSION zstd);

COPY (
    WITH s AS (
        SELECT ids.user_id,
               max_by(requests, ts) AS requests, max_by(impressions, ts) AS impressions,
               max_by(clicks, ts) AS clicks, max_by(conversions, ts) AS conversions,
               max_by(last_visit, ts) AS last_visit, max_by(last_click, ts) AS last_click
        FROM user_state
        JOIN snapshot_users AS ids USING (uk)
        WHERE ts < {{ as_of }} GROUP BY ids.user_id
    ), attributes AS (  -- every user of the users table, seen yet or not
        SELECT user_id, signup_ts {{ user_extras }} FROM read_parquet({{ users }})
    )
    SELECT coalesce(a.user_id, s.user_id) AS user_id, a.* EXCLUDE (user_id),
           CAST(coalesce(s.requests, 0) AS DOUBLE) AS requests, CAST(coalesce(s.impressions, 0) AS DOUBLE) AS impressions,
           CAST(coalesce(s.clicks, 0) AS DOUBLE) AS clicks, CAST(coalesce(s.conversions, 0) AS DOUBLE) AS conversions,
           s.last_visit, s.last_click
    FROM attributes AS a FULL JOIN s USING (user_id)
    ORDER BY user_id
) TO {{ users_path }} (FORMAT parquet, COMPRESSION zstd);

-- The user×category, user×partner and user×offer states are the sums of their events before
-- {{ as_of }}, grouped on integer keys and named through the user and offer maps.

COPY (
    SELECT u.user_id, s.category, CAST(s.impressions AS DOUBLE) AS impressions, CAST(s.clicks AS DOUBLE) AS clicks
    FROM (SELECT uk, category, sum(impressions) AS impressions, sum(clicks) AS clicks
          FROM events WHERE category IS NOT NULL AND ts < {{ as_of }} GROUP BY uk, category) AS s
    JOIN snapshot_users AS u USING (uk)
    ORDER BY u.user_id, s.category
) TO {{ user_category_path }} (FORMAT parquet, COMPRESSION zstd);

COPY (
    SELECT u.user_id, o.partner, CAST(sum(s.impressions) AS DOUBLE) AS impressions,
           CAST(sum(s.clicks) AS DOUBLE) AS clicks, CAST(sum(s.conversions) AS DOUBLE) AS conversions
    FROM (SELECT uk, ok, sum(impressions) AS impressions, sum(clicks) AS clicks, sum(conversions) AS conversions
          FROM events WHERE upk IS NOT NULL AND ts < {{ as_of }} GROUP BY uk, ok) AS s
    JOIN snapshot_users AS u USING (uk)
    JOIN snapshot_offers AS o USING (ok)
    GROUP BY u.user_id, o.partner
    ORDER BY u.user_id, o.partner
) TO {{ user_partner_path }} (FORMAT parquet, COMPRESSION zstd);

COPY (
    SELECT u.user_id, o.offer_id, CAST(s.impressions AS DOUBLE) AS impressions, CAST(s.clicks AS DOUBLE) AS clicks,
           CAST(s.conversions AS DOUBLE) AS conversions, s.last_seen
    FROM (SELECT uk, ok, sum(impressions) AS impressions, sum(clicks) AS clicks, sum(conversions) AS conversions,
                 max(CASE WHEN impressions > 0 THEN ts END) AS last_seen
          FROM events WHERE ts < {{ as_of }} GROUP BY uk, ok) AS s
    JOIN snapshot_users AS u USING (uk)
    JOIN snapshot_offers AS o USING (ok)
    ORDER BY u.user_id, o.offer_id
) TO {{ user_offer_path }} (FORMAT parquet, COMPRESSION zstd);

COPY (
    SELECT 'offer' AS kind, category_key AS key, ctr_mean, ctr_strength, cvr_mean, cvr_strength
    FROM offer_priors WHERE day = {{ prior_day }}
    UNION ALL
    SELECT 'user', NULL, mean, strength, NULL, NULL FROM user_priors WHERE day = {{ prior_day }}
    UNION ALL
    SELECT 'position', CAST(position AS VARCHAR), ctr, NULL, NULL, NULL FROM position_ctr WHERE day = {{ prior_day }}
) TO {{ priors_path }} (FORMAT parquet);
