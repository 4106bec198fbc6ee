"""The demo's training jobs: real scikit-learn models whose per-iteration metrics go through `lake.runs`.

Each candidate is trained step by step inside its run (SGD and MLP epochs with `partial_fit`, boosting and a
random forest grown with `warm_start`), and every step logs train_loss, val_loss, val_accuracy and val_auc on
held-out rows as soon as it ends, so the curves in the lake are the models' real curves, timed as they were
trained. The model (preprocessing included) is pickled as the run's artifact.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake.demo.data import TARGET

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from metalake.lake import Lake

TUMOR_EXPERIMENT = "tumor-classification"
WINE_EXPERIMENT = "wine-cultivar"
EXPERIMENTS = {
    TUMOR_EXPERIMENT: (
        "Flag malignant biopsies for urgent review (binary; class 0 = malignant).",
        "pathology-ml",
    ),
    WINE_EXPERIMENT: ("Tell the cultivar of a wine from its chemical analysis (3 classes).", "winery-ml"),
}
TUMOR_KINDS = ("sgd-logreg", "gradient-boosting", "mlp")
WINE_KINDS = ("sgd-logreg", "random-forest")
MALIGNANT = 0


@dataclass(frozen=True)
class InputRef:
    """A dataset version a run read, and what for (training or validation)."""

    dataset: str
    version: int
    context: str


@dataclass
class TrainedModel:
    """A finished training run: its id and name, the model kind, its final metrics and the pickled model."""

    run_id: str
    name: str
    kind: str
    experiment: str
    metrics: dict[str, float]
    artifact: Path
    inputs: list[InputRef] = field(default_factory=list)
    reused: bool = False  # finished by an earlier attempt at this round, which was cut short

    @property
    def val_auc(self) -> float:
        return self.metrics["val_auc"]


# A step logger takes a step number and that step's metrics; the run logs them as they come.
StepLogger = Callable[[int, dict[str, float]], None]
# A curve fits an unfitted estimator step by step, handing every step's metrics to the logger as it goes, and
# returns the last step's metrics.
Curve = Callable[[Any, "np.ndarray", "np.ndarray", "np.ndarray", "np.ndarray", StepLogger], dict[str, float]]


@dataclass(frozen=True)
class Recipe:
    """How to train one model kind: build the unfitted estimator from a seed, then fit it along its curve."""

    build: Callable[[int], Any]
    curve: Curve


def ensure_experiments(lake: Lake) -> None:
    """Describe the demo's experiments once, tagged as the demo's (this is also what marks the lake as a demo
    lake, see `demo.target`, so a round writes it first)."""
    known = set(lake.read("experiments", columns=["experiment"]).get_column("experiment").to_list())
    rows = [
        {"experiment": name, "description": text, "owner": team, "tags": {"demo": "true"}}
        for name, (text, team) in EXPERIMENTS.items()
        if name not in known
    ]
    if rows:
        lake.append("experiments", rows, reason="describe the demo experiments")


def finished_runs(lake: Lake, prefix: str) -> dict[tuple[str, str], str]:
    """The finished runs whose name starts with `prefix` (one round's runs): (experiment, name) -> run id."""
    found = lake.sql(
        "select experiment, name, run_id from runs_current "
        "where status = 'finished' and starts_with(name, ?) order by start_time",
        [prefix],
    ).fetchall()
    return {(experiment, name): run_id for experiment, name, run_id in found}


def reuse(
    lake: Lake, run_id: str, *, experiment: str, kind: str, artifact: Path, inputs: Sequence[InputRef]
) -> TrainedModel | None:
    """A run that an interrupted attempt at this round finished, as a TrainedModel; None if its model file is
    gone (then the candidate is trained again)."""
    if not artifact.is_file():
        return None
    details = lake.runs.get(run_id)
    metrics = {key: float(summary["last_value"]) for key, summary in details.metrics.items()}
    name = str(details.info["name"])
    return TrainedModel(run_id, name, kind, experiment, metrics, artifact, list(inputs), reused=True)


def artifact_path(artifacts: Path, experiment: str, name: str) -> Path:
    return artifacts / experiment / f"{name}.pkl"


def train(
    lake: Lake,
    *,
    experiment: str,
    kind: str,
    name: str,
    train_frame: pd.DataFrame,
    val_frame: pd.DataFrame,
    features: Sequence[str],
    inputs: Sequence[InputRef],
    tags: Mapping[str, str],
    artifacts: Path,
    seed: int,
) -> TrainedModel:
    """Train one candidate as a metalake run, logging as it trains: params and inputs first, then every step's
    metrics as the step ends, the screening metrics and the pickled model; the run lasts as long as the fit."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    recipe = RECIPES[kind]
    estimator = recipe.build(seed)
    with lake.runs.start(experiment=experiment, name=name, tags=dict(tags)) as run:
        run.log_params(
            {
                "model_type": kind,
                **_hyperparameters(estimator),
                "features": len(features),
                "train_rows": len(train_frame),
                "val_rows": len(val_frame),
                "preprocessing": "median imputation + standardization",
                "seed": seed,
            }
        )
        for ref in inputs:
            run.log_input(ref.dataset, version=ref.version, context=ref.context)
        # The features the recipe expects; a column the delivery lacks (renamed upstream) comes in empty.
        x_train_raw = train_frame.reindex(columns=list(features))
        imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(x_train_raw)
        scaler = StandardScaler().fit(imputer.transform(x_train_raw))
        x_train = scaler.transform(imputer.transform(x_train_raw))
        x_val = scaler.transform(imputer.transform(val_frame.reindex(columns=list(features))))
        y_train = train_frame[TARGET].to_numpy()
        y_val = val_frame[TARGET].to_numpy()
        steps = 0

        def log_step(step: int, metrics: dict[str, float]) -> None:
            nonlocal steps
            run.log_metrics(metrics, step=step)
            steps = step + 1

        last = recipe.curve(estimator, x_train, y_train, x_val, y_val, log_step)
        extra = _screening_metrics(y_val, estimator.predict(x_val)) if experiment == TUMOR_EXPERIMENT else {}
        if extra:
            run.log_metrics(extra, step=steps - 1)
        artifact = artifact_path(artifacts, experiment, name)
        artifact.parent.mkdir(parents=True, exist_ok=True)
        pipeline = Pipeline([("impute", imputer), ("scale", scaler), ("model", estimator)])
        artifact.write_bytes(pickle.dumps(pipeline))
        run.log_artifact(artifact, name="model", kind="sklearn-pickle")
    return TrainedModel(run.run_id, name, kind, experiment, last | extra, artifact, list(inputs))


def _screening_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """What the clinic cares about: the share of malignant cases flagged, and of benign ones flagged wrongly."""
    malignant = y_true == MALIGNANT
    flagged = predicted == MALIGNANT
    return {
        "val_malignant_recall": float((flagged & malignant).sum() / max(malignant.sum(), 1)),
        "val_false_alarm_rate": float((flagged & ~malignant).sum() / max((~malignant).sum(), 1)),
    }


HYPERPARAMETERS = (
    "alpha",
    "learning_rate",
    "learning_rate_init",
    "n_estimators",
    "max_depth",
    "subsample",
    "hidden_layer_sizes",
    "loss",
)


def _hyperparameters(estimator: Any) -> dict[str, str]:
    params = estimator.get_params()
    return {key: str(params[key]) for key in HYPERPARAMETERS if key in params}


# -- curves -----------------------------------------------------------------------------------------------------


def _scores(
    y_train: np.ndarray, p_train: np.ndarray, y_val: np.ndarray, p_val: np.ndarray, classes: np.ndarray
) -> dict[str, float]:
    """Log loss on both sides, accuracy and AUC (one-vs-rest macro average for several classes) on held-out rows.

    The same numbers as sklearn.metrics (log_loss, accuracy_score, roc_auc_score), computed directly: they are
    taken at every step of every model, where sklearn's argument checks would cost a second per round.
    """
    import numpy as np

    predicted = classes[p_val.argmax(axis=1)]
    return {
        "train_loss": _log_loss(y_train, p_train, classes),
        "val_loss": _log_loss(y_val, p_val, classes),
        "val_accuracy": float(np.mean(predicted == y_val)),
        "val_auc": _auc(y_val, p_val, classes),
    }


def _log_loss(y: np.ndarray, p: np.ndarray, classes: np.ndarray) -> float:
    import numpy as np

    eps = np.finfo(p.dtype).eps
    picked = p[np.arange(len(y)), np.searchsorted(classes, y)]
    return float(-np.mean(np.log(np.clip(picked, eps, 1 - eps))))


def _auc(y: np.ndarray, p: np.ndarray, classes: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half); classes[1] is the positive one of two."""
    import numpy as np
    from scipy.stats import rankdata

    def binary(positive: np.ndarray, score: np.ndarray) -> float:
        count = int(positive.sum())
        ranks = rankdata(score)
        return float((ranks[positive].sum() - count * (count + 1) / 2) / (count * (len(score) - count)))

    if len(classes) == 2:
        return binary(y == classes[1], p[:, 1])
    return float(np.mean([binary(y == label, p[:, index]) for index, label in enumerate(classes)]))


def _sgd(seed: int) -> Any:
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="log_loss", alpha=1e-3, learning_rate="optimal", random_state=seed)


def _epoch_curve(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    xv: np.ndarray,
    yv: np.ndarray,
    log_step: StepLogger,
    *,
    epochs: int,
) -> dict[str, float]:
    """One epoch of `partial_fit` per step: logistic regression by stochastic gradient descent, the MLP."""
    import numpy as np

    classes = np.unique(y)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # the MLP's partial_fit warns that one epoch does not converge: by design
        for step in range(epochs):
            model.partial_fit(x, y, classes=classes)
            scores = _scores(y, model.predict_proba(x), yv, model.predict_proba(xv), classes)
            log_step(step, scores)
    return scores


def _boosting(seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(
        n_estimators=60, max_depth=2, learning_rate=0.1, subsample=0.8, random_state=seed, warm_start=True
    )


def _boosting_curve(
    model: Any, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, log_step: StepLogger
) -> dict[str, float]:
    """Gradient boosting, one step per added tree (`warm_start` adds one tree to the fitted ones per fit)."""
    total = model.n_estimators
    for trees in range(1, total + 1):
        model.set_params(n_estimators=trees).fit(x, y)
        scores = _scores(y, model.predict_proba(x), yv, model.predict_proba(xv), model.classes_)
        log_step(trees - 1, scores)
    return scores


def _mlp(seed: int) -> Any:
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=3e-3, alpha=1e-3, random_state=seed)


def _forest(seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=80, max_depth=6, warm_start=True, random_state=seed, n_jobs=1)


def _forest_curve(
    model: Any, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, log_step: StepLogger
) -> dict[str, float]:
    """A random forest grown ten trees at a time (`warm_start`), one step per growth."""
    total = model.n_estimators
    for step, trees in enumerate(range(10, total + 10, 10)):
        model.set_params(n_estimators=trees).fit(x, y)
        scores = _scores(y, model.predict_proba(x), yv, model.predict_proba(xv), model.classes_)
        log_step(step, scores)
    return scores


RECIPES: dict[str, Recipe] = {
    "sgd-logreg": Recipe(_sgd, partial(_epoch_curve, epochs=30)),
    "gradient-boosting": Recipe(_boosting, _boosting_curve),
    "mlp": Recipe(_mlp, partial(_epoch_curve, epochs=40)),
    "random-forest": Recipe(_forest, _forest_curve),
}
