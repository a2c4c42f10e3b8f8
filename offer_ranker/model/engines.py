"""Gradient-boosting engines behind one interface: a ranker (LambdaRank) and a binary classifier.

``fit_ranker`` and ``fit_classifier`` return a :class:`Booster` that predicts from the float
matrix of :class:`offer_ranker.featurize.frame.FeatureSpec` and saves to / loads from one text file.
LightGBM is the default engine; XGBoost (``rank:ndcg``, ``binary:logistic``) is the alternative,
on one machine or on Spark (``xgboost-spark``: the same boosters, trained by :mod:`.distributed`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offer_ranker.stats.metrics import request_starts

#: xgboost-spark trains XGBoost on Spark (:mod:`.distributed`); its boosters are XGBoost's
ENGINES = ("lightgbm", "xgboost", "xgboost-spark")
#: XGBoost's objective and early-stopping metric of each kind of model
XGB_OBJECTIVES = {"ranker": {"objective": "rank:ndcg", "eval_metric": "ndcg@3"},
                  "classifier": {"objective": "binary:logistic", "eval_metric": "logloss"}}


@dataclass
class RankData:
    """Rows of whole requests, in request order: features, graded labels, group sizes."""

    X: np.ndarray
    label: np.ndarray
    groups: np.ndarray
    weight: np.ndarray | None = None
    position: np.ndarray | None = None  # for LightGBM's position-aware LambdaRank


@dataclass
class Booster:
    """A trained model of one engine: ``predict`` gives a ranking score or a probability."""

    engine: str
    kind: str  # "ranker" | "classifier"
    model: Any
    categorical: list[int]
    best_iteration: int = 0
    history: list[float] = field(default_factory=list)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.engine == "lightgbm":
            if len(X) < 1000 and self.model.num_model_per_iteration() == 1:
                return _predict_rows(self.model, X)
            return self.model.predict(X, num_threads=0)
        import xgboost as xgb

        return self.model.predict(xgb.DMatrix(X, feature_types=self._types(X.shape[1]), enable_categorical=True))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions (SHAP values) plus the bias in the last column, raw-score scale."""
        if self.engine == "lightgbm":  # one thread for a request's few rows: starting threads costs ~8 ms
            return self.model.predict(X, pred_contrib=True, num_threads=1 if len(X) < 1000 else 0)
        import xgboost as xgb

        return self.model.predict(xgb.DMatrix(X, feature_types=self._types(X.shape[1]), enable_categorical=True),
                                  pred_contribs=True)

    def _types(self, n: int) -> list[str]:
        return feature_types(self.categorical, n)

    def save(self, path: Path) -> None:
        self.model.save_model(str(path))

    @classmethod
    def load(cls, engine: str, kind: str, path: Path, categorical: list[int]) -> Booster:
        if engine == "lightgbm":
            import lightgbm as lgb

            return cls(engine, kind, lgb.Booster(model_file=str(path)), categorical)
        import xgboost as xgb

        model = xgb.Booster()
        model.load_model(str(path))
        model.set_param({"nthread": 2})
        return cls(engine, kind, model, categorical)


_ONE_THREAD = ctypes.c_char_p(b"num_threads=1")


def _predict_rows(model: Any, X: np.ndarray) -> np.ndarray:
    """LightGBM's prediction of a request's few rows on one thread (starting threads costs ~8 ms),
    through the C API directly: ``Booster.predict`` checks its inputs and builds a predictor on
    every call, a third of the time of scoring 20 rows. Same C function, same result."""
    from lightgbm.basic import _LIB, _safe_call

    X = np.ascontiguousarray(X, dtype=np.float64)
    out = np.empty(len(X), dtype=np.float64)
    written = ctypes.c_int64(0)
    _safe_call(_LIB.LGBM_BoosterPredictForMat(
        model._handle, X.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), ctypes.c_int(1),  # float64
        ctypes.c_int32(X.shape[0]), ctypes.c_int32(X.shape[1]), ctypes.c_int(1),  # row-major
        # normal prediction, from the first iteration to the best (as Booster.predict; 0: all)
        ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(model.best_iteration),
        _ONE_THREAD, ctypes.byref(written), out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))))
    if written.value != len(X):
        raise ValueError(f"LightGBM wrote {written.value} predictions for {len(X)} rows")
    return out


Report = Callable[[int, float], None]  # (iteration, validation score): tuning reports progress here


def fit_ranker(engine: str, train: RankData, valid: RankData, params: dict[str, Any], *, gains: tuple[float, ...],
               categorical: list[int], rounds: int, early_stopping: int, position_aware: bool = False,
               report: Report | None = None) -> Booster:
    """LambdaRank on graded labels (``gains[label]`` is a label's gain); early stopping on the
    validation requests' NDCG@3."""
    _one_machine(engine)
    if engine == "lightgbm":
        return _lgb_fit(train, valid, {"objective": "lambdarank", "metric": "ndcg", "eval_at": [3],
                                       "label_gain": list(gains), **params},
                        "ranker", categorical, rounds, early_stopping, position_aware, report)
    return _xgb_fit(train, valid, XGB_OBJECTIVES["ranker"] | {"lambdarank_unbiased": position_aware, **params},
                    "ranker", categorical, rounds, early_stopping, report, gains=gains)


def fit_classifier(engine: str, train: RankData, valid: RankData, params: dict[str, Any], *, categorical: list[int],
                   rounds: int, early_stopping: int) -> Booster:
    """A binary classifier (``label`` 0/1); early stopping on the validation log loss."""
    _one_machine(engine)
    if engine == "lightgbm":
        return _lgb_fit(train, valid, {"objective": "binary", "metric": "binary_logloss", **params},
                        "classifier", categorical, rounds, early_stopping, False, None)
    return _xgb_fit(train, valid, XGB_OBJECTIVES["classifier"] | params,
                    "classifier", categorical, rounds, early_stopping, None)


def _one_machine(engine: str) -> None:
    if engine not in ("lightgbm", "xgboost"):
        raise ValueError(f"engine {engine!r} does not fit in-memory matrices: xgboost-spark trains through "
                         f"offer_ranker.model.train, which has Spark read the frame (model/distributed.py)")


def _lgb_fit(train: RankData, valid: RankData, params: dict[str, Any], kind: str, categorical: list[int],
             rounds: int, early_stopping: int, position_aware: bool, report: Report | None) -> Booster:
    import lightgbm as lgb

    params = _fit_constraints(params, train.X.shape[1])

    ranking = kind == "ranker"

    def dataset(d: RankData, reference: Any = None) -> Any:
        return lgb.Dataset(d.X, d.label, weight=d.weight, group=d.groups if ranking else None,
                           position=d.position if position_aware else None, categorical_feature=categorical,
                           reference=reference, free_raw_data=True,
                           params={"verbose": -1, "max_bin": params.get("max_bin", 255)})

    dtrain = dataset(train)
    dvalid = dataset(valid, dtrain)
    history: dict[str, Any] = {}
    callbacks = [lgb.early_stopping(early_stopping, verbose=False), lgb.record_evaluation(history)]
    if report is not None:
        callbacks.append(lambda env: report(env.iteration, env.evaluation_result_list[0][2]))
    model = lgb.train(params | {"verbose": -1}, dtrain, num_boost_round=rounds, valid_sets=[dvalid],
                      valid_names=["valid"], callbacks=callbacks)
    curve = next(iter(history["valid"].values()))
    return Booster("lightgbm", kind, model, categorical, model.best_iteration, [float(v) for v in curve])


def _fit_constraints(params: dict[str, Any], columns: int) -> dict[str, Any]:
    """Trim or drop the monotone constraints to the matrix's columns (inputs without position)."""
    constraints = params.get("monotone_constraints")
    if constraints is None:
        return params
    constraints = list(constraints)[:columns]
    return params | {"monotone_constraints": constraints} if any(constraints) else {
        k: v for k, v in params.items() if k != "monotone_constraints"}


def _lgb_to_xgb(params: dict[str, Any]) -> dict[str, Any]:
    """Translate the engine-neutral parameter names (LightGBM's) to XGBoost's."""
    names = {"learning_rate": "eta", "num_leaves": "max_leaves", "min_data_in_leaf": "min_child_weight",
             "feature_fraction": "colsample_bytree", "bagging_fraction": "subsample", "lambda_l2": "lambda",
             "num_threads": "nthread", "seed": "seed", "max_bin": "max_bin"}
    out = {names[k]: v for k, v in params.items() if k in names}
    if "min_child_weight" in out:  # LightGBM counts rows; XGBoost sums hessians (~p(1-p) per row)
        out["min_child_weight"] = max(1.0, out["min_child_weight"] * 0.02)
    return out | {"tree_method": "hist", "grow_policy": "lossguide", "max_depth": 0, "max_cat_to_onehot": 1}


def feature_types(categorical: list[int], width: int) -> list[str]:
    """XGBoost's type of each of ``width`` input columns: ``c`` categorical, ``q`` numeric."""
    return ["c" if i in categorical else "q" for i in range(width)]


def xgb_params(extra: dict[str, Any], kind: str, width: int) -> dict[str, Any]:
    """XGBoost's parameters for the engine-neutral ``extra`` (LightGBM's names, objective and
    metric) of a ``kind`` model on ``width`` input columns: the same on one machine and on Spark."""
    params = _lgb_to_xgb(extra) | {k: v for k, v in extra.items() if k in (
        "objective", "eval_metric", "lambdarank_unbiased")}
    constraints = _fit_constraints(extra, width).get("monotone_constraints")
    if constraints:
        params["monotone_constraints"] = "(" + ",".join(str(int(c)) for c in constraints) + ")"
    if kind == "ranker":
        params["ndcg_exp_gain"] = False  # XGBoost's NDCG gain is then the label itself
    return params


def xgb_booster(model: Any, curve: list[float], kind: str, categorical: list[int]) -> Booster:
    """The :class:`Booster` of a fitted XGBoost model, cut at its best round (as LightGBM's predict
    does by default); ``curve`` is the validation metric per round."""
    best = int(getattr(model, "best_iteration", len(curve) - 1)) + 1
    return Booster("xgboost", kind, model[:best], categorical, best, [float(v) for v in curve])


def _xgb_fit(train: RankData, valid: RankData, extra: dict[str, Any], kind: str, categorical: list[int],
             rounds: int, early_stopping: int, report: Report | None, *, gains: Any = None) -> Booster:
    import xgboost as xgb

    types = feature_types(categorical, train.X.shape[1])
    ranking = kind == "ranker"

    def dmatrix(d: RankData) -> Any:
        label = np.asarray(gains, dtype=np.float64)[d.label.astype(int)] if ranking else d.label
        m = xgb.DMatrix(d.X, label, weight=None if ranking else d.weight, feature_types=types,
                        enable_categorical=True)
        if ranking:
            m.set_group(d.groups)
            if d.weight is not None:  # XGBoost ranking weights are per group: the mean of its rows
                m.set_weight(np.add.reduceat(d.weight, request_starts(d.groups)) / d.groups)
        return m

    history: dict[str, Any] = {}
    callbacks: list[Any] = []
    if report is not None:
        class _Report(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                report(epoch, next(iter(evals_log["valid"].values()))[-1])
                return False
        callbacks.append(_Report())
    model = xgb.train(xgb_params(extra, kind, train.X.shape[1]), dmatrix(train), num_boost_round=rounds,
                      evals=[(dmatrix(valid), "valid")], evals_result=history, early_stopping_rounds=early_stopping,
                      verbose_eval=False, callbacks=callbacks)
    return xgb_booster(model, next(iter(history["valid"].values())), kind, categorical)
