COPY (FROM frame ORDER BY ts, request_id, position, offer_id) TO {{ path }} (FORMAT parquet, COMPRESSION snappy);
