"""The demo's training jobs: real scikit-learn models whose per-iteration metrics go through `lake.runs`.

Each candidate is trained step by step (SGD and MLP epochs with `partial_fit`, boosting stages with
`staged_predict_proba`, a random forest grown with `warm_start`), and every step logs train_loss, val_loss,
val_accuracy and val_auc on held-out rows, so the curves in the lake are the models' real curves. The model
(preprocessing included) is pickled as the run's artifact.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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

    @property
    def val_auc(self) -> float:
        return self.metrics["val_auc"]


# A curve function fits one model kind and returns the fitted estimator and one metrics dict per step.
Curve = Callable[
    ["np.ndarray", "np.ndarray", "np.ndarray", "np.ndarray", int], tuple[Any, list[dict[str, float]]]
]


def ensure_experiments(lake: Lake) -> None:
    """Describe the demo's experiments once (runs name them; this row gives them an owner and a purpose)."""
    known = set(lake.read("experiments", columns=["experiment"]).get_column("experiment").to_list())
    rows = [
        {"experiment": name, "description": text, "owner": team, "tags": {"demo": "true"}}
        for name, (text, team) in EXPERIMENTS.items()
        if name not in known
    ]
    if rows:
        lake.append("experiments", rows, reason="describe the demo experiments")


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
    """Train one candidate as a metalake run: params, inputs, per-step metrics, final metrics, artifact."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    # The features the recipe expects; a column the delivery lacks (renamed upstream) comes in empty.
    x_train_raw = train_frame.reindex(columns=list(features))
    imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(x_train_raw)
    scaler = StandardScaler().fit(imputer.transform(x_train_raw))
    x_train = scaler.transform(imputer.transform(x_train_raw))
    x_val = scaler.transform(imputer.transform(val_frame.reindex(columns=list(features))))
    y_train = train_frame[TARGET].to_numpy()
    y_val = val_frame[TARGET].to_numpy()
    estimator, steps = CURVES[kind](x_train, y_train, x_val, y_val, seed)
    extra = _screening_metrics(y_val, estimator.predict(x_val)) if experiment == TUMOR_EXPERIMENT else {}
    pipeline = Pipeline([("impute", imputer), ("scale", scaler), ("model", estimator)])
    artifact = artifacts / experiment / f"{name}.pkl"
    artifact.parent.mkdir(parents=True, exist_ok=True)
    artifact.write_bytes(pickle.dumps(pipeline))

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
        for step, metrics in enumerate(steps):
            run.log_metrics(metrics, step=step)
        if extra:
            run.log_metrics(extra, step=len(steps) - 1)
        run.log_artifact(artifact, name="model", kind="sklearn-pickle")
    return TrainedModel(run.run_id, name, kind, experiment, steps[-1] | extra, artifact, list(inputs))


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
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    if len(classes) == 2:
        auc = roc_auc_score(y_val, p_val[:, 1])
    else:
        auc = roc_auc_score(y_val, p_val, multi_class="ovr", labels=classes)
    return {
        "train_loss": float(log_loss(y_train, p_train, labels=classes)),
        "val_loss": float(log_loss(y_val, p_val, labels=classes)),
        "val_accuracy": float(accuracy_score(y_val, classes[p_val.argmax(axis=1)])),
        "val_auc": float(auc),
    }


def _sgd_curve(
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int
) -> tuple[Any, list[dict[str, float]]]:
    """Logistic regression by stochastic gradient descent, one epoch per step."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier

    classes = np.unique(y)
    model = SGDClassifier(loss="log_loss", alpha=1e-3, learning_rate="optimal", random_state=seed)
    steps = []
    for _ in range(30):
        model.partial_fit(x, y, classes=classes)
        steps.append(_scores(y, model.predict_proba(x), yv, model.predict_proba(xv), classes))
    return model, steps


def _boosting_curve(
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int
) -> tuple[Any, list[dict[str, float]]]:
    """Gradient boosting, one step per added tree (the staged predictions of the fitted ensemble)."""
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(
        n_estimators=60, max_depth=2, learning_rate=0.1, subsample=0.8, random_state=seed
    ).fit(x, y)
    stages = zip(model.staged_predict_proba(x), model.staged_predict_proba(xv), strict=True)
    return model, [_scores(y, p_train, yv, p_val, model.classes_) for p_train, p_val in stages]


def _mlp_curve(
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int
) -> tuple[Any, list[dict[str, float]]]:
    """A small neural network, one epoch per step."""
    import numpy as np
    from sklearn.neural_network import MLPClassifier

    classes = np.unique(y)
    model = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=3e-3, alpha=1e-3, random_state=seed)
    steps = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # partial_fit warns that one epoch does not converge: by design
        for _ in range(40):
            model.partial_fit(x, y, classes=classes)
            steps.append(_scores(y, model.predict_proba(x), yv, model.predict_proba(xv), classes))
    return model, steps


def _forest_curve(
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int
) -> tuple[Any, list[dict[str, float]]]:
    """A random forest grown ten trees at a time (`warm_start`), one step per growth."""
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=10, max_depth=6, warm_start=True, random_state=seed, n_jobs=1)
    steps = []
    for trees in range(10, 90, 10):
        model.set_params(n_estimators=trees)
        model.fit(x, y)
        steps.append(_scores(y, model.predict_proba(x), yv, model.predict_proba(xv), model.classes_))
    return model, steps


CURVES: dict[str, Curve] = {
    "sgd-logreg": _sgd_curve,
    "gradient-boosting": _boosting_curve,
    "mlp": _mlp_curve,
    "random-forest": _forest_curve,
}
