"""The PyTorch Lightning family: an MLP over the preprocessed feature matrix, as a scikit-learn estimator.

Following Lightning's examples, the architecture (`TabularNet`), the training loop (`TabularClassifierModule`) and
the data (`TabularDataModule`) are separate classes. `LightningClassifier` ties them together behind sklearn's
estimator interface so it can be the last step of the same `Pipeline` as the sklearn family; once fitted it keeps
only the trained network, so it pickles small and holds no Trainer.
"""

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.warnings import PossibleUserWarning
from pytorch_lightning.callbacks import EarlyStopping
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor, nn
from torch.nn import functional
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler, TensorDataset

from cicloml.errors import ConfigError, DataError
from cicloml.models.preprocessing import FeatureSchema, build_preprocessor
from cicloml.models.sklearn import check_sample_weight

# Rows scored per forward pass in predict_proba: bounds memory when batch-scoring a large frame.
_PREDICT_CHUNK_ROWS = 65_536


class TabularNet(nn.Module):
    """A multilayer perceptron: (Linear, ReLU, Dropout) per hidden size, then one logit per row."""

    def __init__(self, n_features: int, hidden_sizes: Sequence[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.layers(features).squeeze(-1)


class TabularClassifierModule(pl.LightningModule):
    """Trains a network that outputs one logit per row with binary cross-entropy and Adam. A batch is (features,
    target) or (features, target, weight): with weights, each row's loss is multiplied by its weight before the
    batch mean, in training and validation alike."""

    def __init__(self, network: nn.Module, learning_rate: float, weight_decay: float) -> None:
        super().__init__()
        # The network is a module, not a hyperparameter: Lightning warns when asked to save it.
        self.save_hyperparameters(ignore=["network"])
        self.network = network
        self.loss = nn.BCEWithLogitsLoss()

    def forward(self, features: Tensor) -> Tensor:
        return self.network(features)

    def batch_loss(self, batch: Sequence[Tensor]) -> Tensor:
        """The batch's mean binary cross-entropy, each row's weighted by its weight if the batch has weights."""
        features, target, *weight = batch
        if not weight:
            return self.loss(self(features), target)
        # The mean of weight × loss, not their ratio of sums: a batch of rows weighted near zero then teaches
        # near nothing, as it should, and Lightning's epoch mean of batch means (by batch size) is the weighted
        # mean over all rows, up to the constant mean weight.
        return functional.binary_cross_entropy_with_logits(self(features), target, weight=weight[0])

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        loss = self.batch_loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[1]))
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self.log("val_loss", self.batch_loss(batch), on_epoch=True, batch_size=len(batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.parameters(), lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )


class TabularDataModule(pl.LightningDataModule):
    """Training and validation batches from in-memory arrays; the validation rows are the last
    `validation_fraction` of the rows, so with rows in time order the model is validated on its most recent data.
    With `weights` (one per row), each batch carries its rows' weights as a third tensor."""

    def __init__(
        self,
        features: np.ndarray,
        target: np.ndarray,
        validation_fraction: float,
        batch_size: int,
        seed: int,
        weights: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        n_validation = round(len(features) * validation_fraction)
        if not 0 < n_validation < len(features):
            raise ValueError(
                f"validation_fraction={validation_fraction} of {len(features)} rows leaves no training or no "
                "validation rows; pass a fraction between 0 and 1 and enough rows for both"
            )
        n_train = len(features) - n_validation
        tensors = [torch.from_numpy(features), torch.from_numpy(target)]
        if weights is not None:
            for part, rows in (("training", weights[:n_train]), ("validation", weights[n_train:])):
                if not rows.any():
                    raise DataError(
                        f"all {len(rows)} {part} rows have weight zero (the validation rows are the last "
                        f"validation_fraction={validation_fraction} of the rows): there is nothing to "
                        f"{'learn from' if part == 'training' else 'stop early on'}"
                    )
            tensors.append(torch.from_numpy(np.asarray(weights, dtype=np.float32)))
        self.train_set = TensorDataset(*(tensor[:n_train] for tensor in tensors))
        self.validation_set = TensorDataset(*(tensor[n_train:] for tensor in tensors))
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        # A local generator makes the shuffle order depend on the seed alone, not on global random state.
        order = RandomSampler(self.train_set, generator=torch.Generator().manual_seed(self.seed))
        return _batches(self.train_set, order, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return _batches(self.validation_set, SequentialSampler(self.validation_set), self.batch_size)


def _batches(dataset: TensorDataset, order: Sampler[int], batch_size: int) -> DataLoader:
    """Batches that index the tensors with a whole batch of row numbers at once: several times faster than
    DataLoader's default of fetching rows one by one and stacking them."""
    return DataLoader(dataset, sampler=BatchSampler(order, batch_size, drop_last=False), batch_size=None)


class _BestWeights(pl.Callback):
    """Keeps the weights of the epoch with the lowest validation loss, in memory (no checkpoint files): early
    stopping ends `patience` epochs after the best one, and those extra epochs are the ones that overfit."""

    def __init__(self) -> None:
        self.loss = float("inf")
        self.epoch = -1
        self.state: dict[str, Tensor] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics["val_loss"].item()
        if loss < self.loss:
            self.loss, self.epoch = loss, trainer.current_epoch
            self.state = {name: value.detach().clone() for name, value in pl_module.state_dict().items()}


@contextmanager
def _training_scope(seed: int) -> Iterator[None]:
    """Run one fit with torch's CPU generator seeded and Lightning quiet, then put back what the fit changes
    process-wide: the caller's random state, the log level, and the determinism flags that
    `Trainer(deterministic=True)` sets globally (left on, they make later CUDA work fail on ops without a
    deterministic kernel)."""
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # Seeding the default generator alone: torch.manual_seed would also reseed CUDA, which training never uses.
        torch.random.default_generator.manual_seed(seed)
        # The data is in memory, so Lightning's hints (more DataLoader workers, logging interval) do not apply.
        warnings.simplefilter("ignore", PossibleUserWarning)
        # Lightning 2.6 builds a torch pytree LeafSpec, which newer torch deprecates, once per fit
        # (Lightning-AI/pytorch-lightning#21326).
        warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)", FutureWarning)
        logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(level)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.backends.cudnn.benchmark = benchmark


class LightningClassifier(ClassifierMixin, BaseEstimator):
    """A binary classifier trained with PyTorch Lightning on CPU, with early stopping on the last
    `validation_fraction` of the rows (pass rows in time order). Fitted, it keeps only the trained network
    (`network_`, weights of the best validation epoch), so it pickles without Lightning objects."""

    def __init__(
        self,
        *,
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        max_epochs: int = 50,
        patience: int = 5,
        validation_fraction: float = 0.15,
        seed: int = 0,
    ) -> None:
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Self:
        """Train until the validation loss stops improving for `patience` epochs (or `max_epochs`). With
        `sample_weight` (one finite, non-negative weight per row), each row's binary cross-entropy counts in
        proportion to its weight, in the training loss and in the validation loss that early stopping and the
        best epoch go by; the weights are scaled to mean 1, so only their ratios matter."""
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) != 2:
            raise ValueError(f"LightningClassifier is binary; y has {len(self.classes_)} classes: {self.classes_}")
        weights = None
        if sample_weight is not None:
            weights = check_sample_weight(sample_weight, len(X))
            weights = weights / weights.mean()
        data = TabularDataModule(
            X, encoded.astype(np.float32), self.validation_fraction, self.batch_size, self.seed, weights=weights
        )
        best = _BestWeights()
        with _training_scope(self.seed):
            trainer = pl.Trainer(
                accelerator="cpu",
                devices=1,
                deterministic=True,
                max_epochs=self.max_epochs,
                callbacks=[EarlyStopping(monitor="val_loss", patience=self.patience), best],
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
            )
            network = TabularNet(X.shape[1], self.hidden_sizes, self.dropout)
            module = TabularClassifierModule(network, self.learning_rate, self.weight_decay)
            trainer.fit(module, datamodule=data)
        module.load_state_dict(best.state)
        self.network_ = network.eval()
        self.n_epochs_ = trainer.current_epoch
        self.best_epoch_ = best.epoch
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of `classes_[0]` and `classes_[1]`, one row per input row."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        with torch.inference_mode():
            logits = [self.network_(chunk) for chunk in torch.from_numpy(X).split(_PREDICT_CHUNK_ROWS)]
            positive = torch.sigmoid(torch.cat(logits)).double().numpy()
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X: Any) -> np.ndarray:
        """`classes_[1]` where its probability is above one half, else `classes_[0]`."""
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]


def build_lightning_pipeline(schema: FeatureSchema, params: dict[str, Any], seed: int) -> Pipeline:
    """The shared preprocessing followed by a `LightningClassifier` with `params` (the spec's lightning model
    fields) and `seed`."""
    allowed = sorted(set(LightningClassifier().get_params()) - {"seed"})
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"the lightning model takes no parameter(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    return Pipeline(
        [("preprocess", build_preprocessor(schema)), ("classifier", LightningClassifier(**params, seed=seed))]
    )
