"""The ranking service: the REST contract (:mod:`.api`), the engine behind it (:mod:`.engine`), A/B
routing (:mod:`.router`), the prediction log, and the BentoML service (:mod:`.service`)."""
