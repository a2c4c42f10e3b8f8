"""Offline evaluation of a bundle: metrics against baselines, off-policy estimates, the serving
policy replayed, and SHAP explanations for stakeholders."""
