"""Raw logs in: the raw-log contract (:mod:`.schema`) and ingestion (:mod:`.ingest`)."""
