-- Baseline for bench_features.py: one window aggregate over the same impressions (each
-- impression's running click count of its offer), written as Parquet like the real pipeline.
COPY (
    SELECT request_id, offer_id,
           sum(CAST(label >= 1 AS INTEGER)) OVER (PARTITION BY offer_id ORDER BY ts ROWS UNBOUNDED PRECEDING) AS clicks
    FROM read_parquet({{ impressions }})
) TO {{ path }} (FORMAT parquet, COMPRESSION snappy);
