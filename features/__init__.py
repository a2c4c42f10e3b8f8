"""Declarative feature definitions (name, entity, type, window, description).

Installed as ``offer_ranker.features``. The definitions arrive with the feature pipeline
(issue 3); this package is where they live.
"""
