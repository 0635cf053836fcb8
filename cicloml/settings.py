"""Where things live: paths, store URLs and secrets, from `CICLO_*` environment variables.

Settings say *where*; the project spec (`cicloml.yaml`, see `cicloml.spec`) says *what*. This is the only module
that reads the environment.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration. Every field can be set as `CICLO_<FIELD>` (e.g. `CICLO_STATE_DIR`)."""

    model_config = SettingsConfigDict(env_prefix="CICLO_", env_file=".env", extra="ignore")

    state_dir: Path = Path(".ciclo")
    """One folder for all local state: data, Feast registry and online store, models, profiles."""

    spec_path: Path = Path("cicloml.yaml")
    """The project spec: feature service, labels, model family, gates, drift thresholds, schedules."""

    online_store: Literal["sqlite", "redis"] = "sqlite"
    """Feast online store: embedded SQLite under the state folder, or Redis at `redis_url`."""

    redis_url: str = "127.0.0.1:6379"
    """Feast Redis connection string (`host:port[,db=0][,password=...]`), used when `online_store` is redis."""

    task_runner: Literal["threads", "dask"] = "threads"
    """Where the flows' parallel parts (per-model drift checks, backfill dates, hyperparameter search candidates)
    run: threads in the flow's process (a search's candidates one after another), or a Dask cluster (prefect-dask)
    at `dask_address`."""

    dask_address: str | None = None
    """The Dask scheduler the `dask` task runner uses (e.g. `tcp://scheduler:8786`); none: a temporary local
    cluster of worker processes, one per flow run, sized to this machine's cores."""

    model_tag: str | None = None
    """The model version a service pins (`name:version`); by default the champion when the service starts."""

    api_token: SecretStr | None = None
    """Bearer token the prediction service requires (health and metrics endpoints stay open); none: no auth."""

    max_request_bytes: int = Field(1_048_576, ge=1024)
    """Largest request body the prediction service reads (413 beyond)."""

    compiled_inference: bool = True
    """Score small calls (a request's few rows) with the model version's compiled trees, where it has them (tree
    ensembles that matched the pipeline at registration; `cicloml.models.compiled`); off: always the scikit-learn
    pipeline, the reference."""

    profile_traffic: bool = True
    """Profile the prediction service's scored rows with whylogs (off the request path) under `profiles_dir`."""

    profile_window_seconds: int = Field(3600, ge=1)
    """Length of a traffic profile's time window; windows start at multiples of it (UTC)."""

    profile_buffer_rows: int = Field(100_000, ge=1)
    """Rows each service worker buffers for profiling; beyond it rows are dropped and counted, never waited for."""

    profile_segment_seconds: int = Field(60, ge=1, le=60)
    """How often each service worker writes what it holds of the current window (its traffic profile and its
    prediction log) as a new segment file: the most a worker killed without warning loses."""

    log_predictions: bool = True
    """Log each entity the prediction service scores (id, time, score) under `prediction_log_dir`, per window, so
    that labels arriving later can be joined to them (live model quality)."""

    slack_webhook_url: SecretStr | None = None
    """Slack incoming-webhook URL for drift and retraining messages (a credential: never logged); none: the
    messages go to the log and a Prefect artifact instead."""

    prefect_port: int = Field(4200, ge=1, le=65535)
    """Port of the Prefect server (UI and API) that `make up` starts on 127.0.0.1."""

    serve_port: int = Field(3000, ge=1, le=65535)
    """Port on 127.0.0.1 where `make up` serves the champion (`cicloml serve`)."""

    prometheus: bool = True
    """Start a Prometheus server with `make up`, scraping `cicloml serve` and evaluating the rules in
    `cicloml/prometheus/rules.yml` (Debian's `prometheus` package); false leaves it out."""

    prometheus_port: int = Field(9090, ge=1, le=65535)
    """Port on 127.0.0.1 of the Prometheus server `make up` starts (UI, alerts and query API)."""

    prefect_database_url: SecretStr | None = None
    """SQLAlchemy URL of the database the Prefect server `make up` starts should use, e.g.
    `postgresql+asyncpg://prefect:secret@db:5432/prefect`; none: SQLite under Prefect's home."""

    bento_cloud_api_key: SecretStr | None = Field(None, validation_alias="BENTO_CLOUD_API_KEY")
    """BentoCloud API token, under BentoML's own variable name (`bentoml` reads it too, with
    BENTO_CLOUD_API_ENDPOINT); with it, or a `bentoml cloud login`, building a bento also deploys it."""

    @field_validator("state_dir", "spec_path")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        # Resolved once, against the directory the process started in: later chdirs (Feast does some) must not move it.
        return path.expanduser().resolve()

    @property
    def secrets(self) -> tuple[SecretStr, ...]:
        """Every secret that is set (each `SecretStr` field, so a new one is included): what
        `cicloml.redaction.redact` takes out of the error messages and logs of a component holding one."""
        values = (getattr(self, name) for name in type(self).model_fields)
        return tuple(value for value in values if isinstance(value, SecretStr))

    @property
    def data_dir(self) -> Path:
        """Raw and generated data (demo tables, labels, predictions)."""
        return self.state_dir / "data"

    @property
    def bentoml_home(self) -> Path:
        """BentoML's home (its model store is the registry; bentos are built here). Serving sets BENTOML_HOME to it."""
        return self.state_dir / "bentoml"

    @property
    def predictions_dir(self) -> Path:
        """Batch predictions: `parquet/` (a dataset partitioned by date) and `predictions.db` (SQLite)."""
        return self.state_dir / "predictions"

    @property
    def registry_dir(self) -> Path:
        """Champion pointers, one JSON file per model name."""
        return self.state_dir / "registry"

    @property
    def feast_dir(self) -> Path:
        """Feast registry and SQLite online store."""
        return self.state_dir / "feast"

    @property
    def alerts_dir(self) -> Path:
        """Receipts of delivered alerts and retraining requests: one per model and window, so reruns skip them."""
        return self.state_dir / "alerts"

    @property
    def incidents_dir(self) -> Path:
        """Each model's drift incidents: the open one and those that cleared (`cicloml.incidents`)."""
        return self.state_dir / "incidents"

    @property
    def reports_dir(self) -> Path:
        """HTML reports for people (drift reports per model and window)."""
        return self.state_dir / "reports"

    @property
    def profiles_dir(self) -> Path:
        """Live traffic profiles: `<model name>/<model version>/<window start>/<worker>-<segment>.bin`."""
        return self.state_dir / "profiles"

    @property
    def stack_dir(self) -> Path:
        """What `make up` started: `stack.json` (PIDs, URLs) and one log per process."""
        return self.state_dir / "stack"

    @property
    def prometheus_dir(self) -> Path:
        """The Prometheus server `make up` starts: its generated `prometheus.yml`, the API token it scrapes with
        (owner-only), and its database under `data/`."""
        return self.state_dir / "prometheus"

    @property
    def prediction_log_dir(self) -> Path:
        """The service's scored entities: `<model name>/<model version>/<window start>/<worker>-<segment>.parquet`."""
        return self.state_dir / "prediction_log"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once. Tests call `get_settings.cache_clear()` after changing the environment."""
    return Settings()
