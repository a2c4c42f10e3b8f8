-- The training frame: identifiers, label and logging columns, then every feature group,
-- ordered by time and request (so every request's rows are contiguous, as a ranker's groups
-- must be).
-- History groups are looked up by (entity key, request ts), the listwise means by request; the
-- per-impression groups (offer_lifecycle, context, passthrough) are computed here from base; the
-- content prior by (offer, request day), its column ({{ content }}) only when the offers have text.
-- Impressions of offers without a partner have no user×partner history: zeros. The crosses
-- (crosses.sql) pair assembled feature columns, so they are applied to the assembled row, after
-- the sort: six string columns carried through the sort of 10M wide rows cost ~12 s of ~40.

-- The outer SELECT keeps the order of the sorted rows it projects (DuckDB guarantees a projection
-- keeps its input's order while insertion order is preserved, the default; hence no SET here).
-- Keep the joins as written: base (wide) is the probe side and every feature table a build side.
-- DuckDB underestimates joins on (key, ts), and its reordering then builds hash tables of the
-- joined wide rows instead: twice as slow, and out of memory at 10M impressions.
SET disabled_optimizers = 'join_order,build_side_probe_side';

COPY (
    SELECT * EXCLUDE (_r, _ok) {{ crosses }}
    FROM (
    SELECT * FROM (
    SELECT
        b._r, b.ok AS _ok, b.request_id, b.user_id, b.offer_id, b.ts, b.position, b.label, b.value, b.propensity, b.policy,
        COLUMNS(oh.* EXCLUDE (ok, ts)), COLUMNS(uh.* EXCLUDE (uk, ts)), COLUMNS(uc.* EXCLUDE (uck, ts)),
        coalesce(up.up_impressions, 0) AS up_impressions, coalesce(up.up_clicks, 0) AS up_clicks,
        coalesce(up.up_conversions, 0) AS up_conversions,
        COLUMNS(uo.* EXCLUDE (uok, ts)),
        offer_age_hours(b.start_ts, b.ts) AS offer_age_hours,
        offer_hours_to_expiry(b.ts, b.end_ts) AS offer_hours_to_expiry,
        offer_payout(b.payout) AS offer_payout,
        offer_category(b.category) AS offer_category,
        offer_partner(b.partner) AS offer_partner,
        ctx_hour(b.ts) AS ctx_hour,
        ctx_weekday(b.ts) AS ctx_weekday,
        ctx_device(b.device) AS ctx_device,
        ctx_country(b.country) AS ctx_country,
        ctx_surface(b.surface) AS ctx_surface,
        lw_candidates(lw.candidates) AS lw_candidates,
        lw_payout_rel(b.payout, lw.payout_mean) AS lw_payout_rel,
        lw_ctr_rel(oh.offer_ctr, lw.ctr_mean) AS lw_ctr_rel
        {{ content }}
        {{ columns }}
    FROM base AS b
    JOIN f_offer_history AS oh ON oh.ok = b.ok AND oh.ts = b.ts
    JOIN f_user_history AS uh ON uh.uk = b.uk AND uh.ts = b.ts
    JOIN f_user_category AS uc ON uc.uck = b.uck AND uc.ts = b.ts
    LEFT JOIN f_user_partner AS up ON up.upk = b.upk AND up.ts = b.ts
    JOIN f_user_offer AS uo ON uo.uok = b.uok AND uo.ts = b.ts
    JOIN f_listwise AS lw ON lw._r = b._r
    LEFT JOIN f_content AS ct ON ct.ok = b.ok AND ct.day = b.day
    )
    ORDER BY ts, _r, position, _ok
    )
) TO {{ path }} (FORMAT parquet, COMPRESSION snappy);
RESET disabled_optimizers;
