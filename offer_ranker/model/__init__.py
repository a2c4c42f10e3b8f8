"""Models: the gradient-boosting engines, fitting and tuning, training a bundle, the bundle format
and the model store, the baselines, and scoring."""
