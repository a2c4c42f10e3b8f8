"""offer-ranker: offer propensity ranking service."""

__version__ = "0.1.0"
