"""The Lightning family as a pipeline: it learns, is reproducible, stops early, pickles, and leaves no trace."""

import logging
import pickle

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from cicloml.models.lightning import LightningClassifier, TabularDataModule, build_lightning_pipeline
from cicloml.models.preprocessing import FeatureSchema

SCHEMA = FeatureSchema(
    entity_keys=("customer_id",),
    numeric=("tenure_months", "monthly_charges", "support_calls"),
    categorical=("plan", "region"),
)
# Small and quick to fit: a higher learning rate than the default so a few epochs suffice.
PARAMS = {"hidden_sizes": (32, 16), "learning_rate": 1e-2, "max_epochs": 20, "patience": 3}
N_TRAIN, N_TEST = 1200, 400


def make_churn_frame(n: int, seed: int, *, signal: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers with missing charges and plans; churn depends on tenure, support calls and plan (if `signal`)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, n).astype(float),
            "monthly_charges": rng.normal(70, 20, n),
            "support_calls": rng.poisson(2, n).astype(float),
            "plan": rng.choice(np.array(["basic", "plus", "pro", None], dtype=object), n),
            "region": rng.choice(["north", "south", "east"], n),
        }
    )
    frame.loc[rng.random(n) < 0.1, "monthly_charges"] = np.nan
    logit = (
        -0.08 * (frame["tenure_months"] - 36) + 0.8 * (frame["support_calls"] - 2) + 1.5 * (frame["plan"] == "basic")
    )
    churn_probability = 1 / (1 + np.exp(-logit)) if signal else np.full(n, 0.3)
    return frame, (rng.random(n) < churn_probability).astype(int)


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, np.ndarray]:
    return make_churn_frame(N_TRAIN + N_TEST, seed=0)


@pytest.fixture(scope="module")
def fitted(churn: tuple[pd.DataFrame, np.ndarray]) -> Pipeline:
    frame, churned = churn
    return build_lightning_pipeline(SCHEMA, PARAMS, seed=0).fit(frame[:N_TRAIN], churned[:N_TRAIN])


def test_beats_a_constant_baseline_on_later_rows(fitted, churn):
    frame, churned = churn
    scores = fitted.predict_proba(frame[N_TRAIN:])[:, 1]
    # A constant score (the base rate) has ROC AUC 0.5.
    assert roc_auc_score(churned[N_TRAIN:], scores) > 0.75


def test_predict_thresholds_the_probability_at_one_half(fitted, churn):
    frame, _ = churn
    probabilities = fitted.predict_proba(frame[N_TRAIN:])
    assert probabilities.shape == (N_TEST, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_array_equal(fitted.predict(frame[N_TRAIN:]), (probabilities[:, 1] > 0.5).astype(int))


def test_same_seed_gives_identical_probabilities_and_another_seed_does_not(fitted, churn):
    frame, churned = churn
    train_frame, train_churned, test_frame = frame[:N_TRAIN], churned[:N_TRAIN], frame[N_TRAIN:]
    expected = fitted.predict_proba(test_frame)
    again = build_lightning_pipeline(SCHEMA, PARAMS, seed=0).fit(train_frame, train_churned)
    np.testing.assert_array_equal(again.predict_proba(test_frame), expected)
    other = build_lightning_pipeline(SCHEMA, PARAMS, seed=1).fit(train_frame, train_churned)
    assert not np.array_equal(other.predict_proba(test_frame), expected)


def test_without_signal_training_stops_early_and_leaves_no_trace(tmp_path, monkeypatch):
    frame, churned = make_churn_frame(N_TRAIN, seed=1, signal=False)
    monkeypatch.chdir(tmp_path)  # where Lightning would write logs and checkpoints
    random_state = torch.random.get_rng_state()
    log_level = logging.getLogger("pytorch_lightning").level

    classifier = build_lightning_pipeline(SCHEMA, PARAMS, seed=0).fit(frame, churned)[-1]

    assert classifier.best_epoch_ < classifier.n_epochs_ < PARAMS["max_epochs"]
    assert list(tmp_path.iterdir()) == []
    torch.testing.assert_close(torch.random.get_rng_state(), random_state, rtol=0, atol=0)
    assert not torch.are_deterministic_algorithms_enabled()
    assert logging.getLogger("pytorch_lightning").level == log_level


def test_predict_proba_before_fit_raises_not_fitted(churn):
    frame, _ = churn
    with pytest.raises(NotFittedError):
        LightningClassifier().predict_proba(np.zeros((3, 4)))
    with pytest.raises(NotFittedError):
        build_lightning_pipeline(SCHEMA, {}, seed=0).predict_proba(frame)


def test_fitted_pipeline_pickles_small_with_identical_outputs(fitted, churn):
    frame, _ = churn
    payload = pickle.dumps(fitted)
    restored = pickle.loads(payload)
    np.testing.assert_array_equal(restored.predict_proba(frame), fitted.predict_proba(frame))
    classifier = restored[-1]
    assert not classifier.network_.training
    assert not any(isinstance(value, pl.LightningModule | pl.Trainer) for value in vars(classifier).values())
    assert len(payload) < 100_000


def test_unknown_param_is_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match="hiden_sizes") as error:
        build_lightning_pipeline(SCHEMA, {"hiden_sizes": (8,), "dropout": 0.2}, seed=0)
    assert "hidden_sizes" in str(error.value)
    assert "dropout" not in str(error.value).split("allowed")[0]  # only the unknown name is reported as unknown


def test_validation_rows_are_the_last_rows():
    features = np.arange(20, dtype=np.float32).reshape(10, 2)
    data = TabularDataModule(features, np.zeros(10, dtype=np.float32), 0.3, batch_size=4, seed=0)
    validation_rows = torch.cat([rows for rows, _ in data.val_dataloader()])
    training_rows = torch.cat([rows for rows, _ in data.train_dataloader()])
    np.testing.assert_array_equal(validation_rows.numpy(), features[7:])
    np.testing.assert_array_equal(np.sort(training_rows.numpy(), axis=0), features[:7])


def test_too_few_rows_for_a_validation_split_is_refused():
    with pytest.raises(ValueError, match="validation_fraction"):
        TabularDataModule(np.zeros((3, 2), np.float32), np.zeros(3, np.float32), 0.1, batch_size=4, seed=0)
