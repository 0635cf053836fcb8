"""The Lightning family as a pipeline: it learns, is reproducible, stops early, pickles, leaves no trace, and
weighs rows by their sample weights."""

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

from cicloml.errors import DataError
from cicloml.models.lightning import (
    LightningClassifier,
    TabularClassifierModule,
    TabularDataModule,
    TabularNet,
    build_lightning_pipeline,
)
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


def test_equal_sample_weights_give_exactly_the_unweighted_model(fitted, churn):
    frame, churned = churn
    expected = fitted.predict_proba(frame[N_TRAIN:])
    for weight in (1.0, 3.0):  # weights are scaled to mean 1: only their ratios matter
        weights = np.full(N_TRAIN, weight)
        weighted = build_lightning_pipeline(SCHEMA, PARAMS, seed=0).fit(
            frame[:N_TRAIN], churned[:N_TRAIN], classifier__sample_weight=weights
        )
        np.testing.assert_array_equal(weighted.predict_proba(frame[N_TRAIN:]), expected)


def test_weights_near_zero_on_contradicting_rows_move_the_model_to_the_other_rows():
    # Rows labelled by `signal > 0`, shuffled with rows of signal 0.3..1 labelled 0 that contradict them; the
    # contradicting rows are in the validation split too, so the weighted validation loss must ignore them as well.
    rng = np.random.default_rng(0)
    n_rule, n_contradicting = 300, 100
    signal = np.concatenate([rng.uniform(-1, 1, n_rule), rng.uniform(0.3, 1, n_contradicting)])
    label = np.where(np.arange(len(signal)) < n_rule, signal > 0, False).astype(int)
    order = rng.permutation(len(signal))
    features = np.column_stack([signal, rng.normal(size=len(signal))])[order]
    label, contradicts = label[order], (np.arange(len(signal)) >= n_rule)[order]
    probe = np.column_stack([np.linspace(0.4, 0.9, 6), np.zeros(6)])
    params = {"hidden_sizes": (16,), "learning_rate": 1e-2, "batch_size": 64, "max_epochs": 20, "patience": 5}

    unweighted = LightningClassifier(**params).fit(features, label).predict_proba(probe)[:, 1]
    weights = np.where(contradicts, 1e-9, 1.0)
    weighted = LightningClassifier(**params).fit(features, label, sample_weight=weights).predict_proba(probe)[:, 1]

    assert (weighted > unweighted).all()
    assert weighted.mean() > 0.9 and weighted.mean() > unweighted.mean() + 0.2


def test_a_batch_loss_is_the_mean_of_each_rows_loss_times_its_weight():
    module = TabularClassifierModule(TabularNet(2, (4,), 0.0), learning_rate=1e-3, weight_decay=0.0)
    features, target = torch.randn(5, 2), torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    weight = torch.tensor([0.0, 2.0, 0.5, 1.0, 1.5])
    row_losses = torch.nn.functional.binary_cross_entropy_with_logits(module(features), target, reduction="none")
    torch.testing.assert_close(module.batch_loss((features, target, weight)), (row_losses * weight).mean())
    unweighted = module.batch_loss((features, target))
    torch.testing.assert_close(module.batch_loss((features, target, torch.ones(5))), unweighted, rtol=0, atol=0)


def test_sample_weights_travel_with_their_rows_into_the_training_and_validation_batches():
    features = np.arange(20, dtype=np.float32).reshape(10, 2)
    weights = np.arange(1, 11, dtype=np.float64)  # row i weighs i + 1
    data = TabularDataModule(features, np.zeros(10, np.float32), 0.3, batch_size=4, seed=0, weights=weights)
    for loader, rows in ((data.train_dataloader(), range(7)), (data.val_dataloader(), range(7, 10))):
        batches = list(loader)
        row_features = torch.cat([batch[0] for batch in batches]).numpy()
        row_weights = torch.cat([batch[2] for batch in batches]).numpy()
        np.testing.assert_array_equal(row_weights, row_features[:, 0] / 2 + 1)
        np.testing.assert_array_equal(np.sort(row_weights), weights[list(rows)])


def test_validation_rows_all_weighted_zero_are_refused():
    with pytest.raises(DataError, match="all 3 validation rows have weight zero"):
        TabularDataModule(
            np.zeros((10, 2), np.float32), np.zeros(10, np.float32), 0.3, 4, seed=0, weights=np.r_[np.ones(7), 0, 0, 0]
        )


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones(39), r"shape \(39,\); pass one weight per training row \(40,\)"),
        (np.r_[np.ones(39), -0.5], "1 negative weight"),
        (np.r_[np.ones(38), np.nan, np.inf], "2 NaN or infinite weight"),
        (np.zeros(40), "zero for all 40 rows"),
    ],
    ids=["length", "negative", "nan", "all-zero"],
)
def test_an_unusable_weight_vector_is_a_clear_data_error(weights, message):
    with pytest.raises(DataError, match=message):
        LightningClassifier(max_epochs=1).fit(np.zeros((40, 2)), np.arange(40) % 2, sample_weight=weights)
