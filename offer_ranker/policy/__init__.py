"""The serving policy, shared by the service and its offline replay: cold-start priors
(:mod:`.priors`) and the re-ranking of scored candidates (:mod:`.rerank`)."""
