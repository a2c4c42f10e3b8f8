"""Optuna search over the ranker's main parameters, on the validation slice's NDCG@3.

TPE sampling with a median pruner: each trial reports its validation NDCG@3 every boosting round
and is stopped early when it falls behind the median of earlier trials at the same round. The
search stops after ``train.tune_trials`` trials or ``train.tune_seconds``, whichever comes first.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from offer_ranker.config import Config
from offer_ranker.featurize.frame import ModelInputs
from offer_ranker.model.fit import fit_ranker_for


def tune(fit: ModelInputs, valid: ModelInputs, cfg: Config, params: dict[str, Any]) -> dict[str, Any]:
    """Best parameters found, the number of trials run and pruned, and the best validation NDCG@3."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        trial_params = params | {
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 127, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 2000, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        }

        def report(iteration: int, value: float) -> None:
            trial.report(value, iteration)
            if trial.should_prune():
                raise optuna.TrialPruned()

        booster = fit_ranker_for(fit, valid, cfg, trial_params, report=report)
        return max(booster.history)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.train.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=10))
    started = time.perf_counter()
    study.optimize(objective, n_trials=cfg.train.tune_trials, timeout=cfg.train.tune_seconds)
    states = [t.state for t in study.trials]
    return {"best_params": dict(study.best_params), "best_valid_ndcg@3": study.best_value,
            "trials": len(study.trials), "pruned": sum(s == optuna.trial.TrialState.PRUNED for s in states),
            "seconds": round(time.perf_counter() - started, 1),
            "trial_runs": [_trial(t) for t in study.trials]}


def _trial(t: Any) -> dict[str, Any]:
    """One trial as the tracking records it (a child run): parameters, value, state and times."""
    def ms(when: Any) -> int | None:
        return int(when.timestamp() * 1000) if when is not None else None

    value = t.value if t.value is not None else (max(t.intermediate_values.values()) if t.intermediate_values
                                                 else None)
    return {"number": t.number, "params": dict(t.params), "value": value, "state": t.state.name,
            "start_ms": ms(t.datetime_start), "end_ms": ms(t.datetime_complete)}
