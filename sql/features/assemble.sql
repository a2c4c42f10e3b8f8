-- The training frame: identifiers, label and logging columns, then every feature group,
-- ordered by time and request (so every request's rows are contiguous, as a ranker's groups
-- must be).
COPY (
    SELECT
        b.request_id, b.user_id, b.offer_id, b.ts, b.position, b.label, b.value, b.propensity, b.policy,
        COLUMNS(oh.* EXCLUDE (_i)), COLUMNS(uh.* EXCLUDE (_i)), COLUMNS(uc.* EXCLUDE (_i)),
        COLUMNS(up.* EXCLUDE (_i)), COLUMNS(uo.* EXCLUDE (_i)), COLUMNS(ol.* EXCLUDE (_i)),
        COLUMNS(cx.* EXCLUDE (_i)), COLUMNS(lw.* EXCLUDE (_i)), COLUMNS(pt.* EXCLUDE (_i))
    FROM base AS b
    JOIN f_offer_history AS oh USING (_i)
    JOIN f_user_history AS uh USING (_i)
    JOIN f_user_category AS uc USING (_i)
    JOIN f_user_partner AS up USING (_i)
    JOIN f_user_offer AS uo USING (_i)
    JOIN f_offer_lifecycle AS ol USING (_i)
    JOIN f_context AS cx USING (_i)
    JOIN f_listwise AS lw USING (_i)
    JOIN f_passthrough AS pt USING (_i)
    ORDER BY b.ts, b._r, b.position, b.ok
) TO {{ path }} (FORMAT parquet, COMPRESSION snappy);
