"""Pure statistics over numpy arrays: ranking and probability metrics, bootstrap intervals,
off-policy estimators, drift, A/B-test maths and SHAP attributions in probability points. Imports
no project code."""
