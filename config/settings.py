"""Typed settings, one class per concern.

Each class reads, highest priority first: keyword arguments, environment variables
(``STREAMLEARN_<SECTION>_<FIELD>``, e.g. ``STREAMLEARN_KAFKA_PARTITIONS=6``), the YAML file named
by ``STREAMLEARN_CONFIG`` (optional, same sections as the defaults), then ``config/defaults.yaml``.
Settings are frozen and built in each process's entry point; nothing here runs at import time.

Example:
    >>> KafkaSettings(partitions=6).partitions
    6
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator

# Re-exported ("as"): callers import everything settings-related from here.
from config.errors import ConfigError as ConfigError
from config.sources import USER_YAML_ENV as USER_YAML_ENV
from config.sources import Section
from config.sources import describe_error as describe_error
from config.sources import load as load

TrainerMode = Literal["stateful", "stateless", "triggered"]  # how `streamlearn train` learns


class StackSettings(Section):
    """The local stack `make up` runs without Docker (Kafka KRaft + redis-server)."""

    section: ClassVar[str] = "stack"

    home: Path = Path(".streamlearn")
    # Resolved Kafka jars; defaults to <home>/cache. Share it between homes to skip Maven.
    cache_dir: Path | None = None
    kafka_version: str = "3.9.1"
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    kafka_heap_mb: int = Field(512, ge=128, le=512)
    start_timeout_s: float = Field(90.0, gt=0)


class KafkaSettings(Section):
    """Broker address, topic names and topic layout."""

    section: ClassVar[str] = "kafka"

    bootstrap_servers: str = "127.0.0.1:9092"
    predictions_topic: str = "predictions"
    events_topic: str = "events"
    examples_topic: str = "examples"
    dlq_topic: str = "dlq"
    late_labels_topic: str = "late-labels"
    partitions: int = Field(3, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=60_000)
    dlq_retention_ms: int = Field(30 * 24 * 3600 * 1000, ge=60_000)

    @field_validator("bootstrap_servers")
    @classmethod
    def _hostport(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @property
    def data_topics(self) -> tuple[str, str, str]:
        """The three co-partitioned topics keyed by prediction_id."""
        return (self.predictions_topic, self.events_topic, self.examples_topic)

    def first_server(self) -> tuple[str, int]:
        """Host and port of the first bootstrap server."""
        host, _, port = self.bootstrap_servers.split(",")[0].strip().rpartition(":")
        return host, int(port)


class RedisSettings(Section):
    """Where the registry lives."""

    section: ClassVar[str] = "redis"

    url: str = "redis://127.0.0.1:6379/0"

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
            raise ValueError(f"expected redis://host:port/db, got {value!r}")
        return value

    def host_port(self) -> tuple[str, int]:
        """Host and port of the Redis server."""
        parsed = urlparse(self.url)
        return parsed.hostname or "127.0.0.1", parsed.port or 6379


class SchemaSettings(Section):
    """Bounds the strict message decoder applies to timestamps."""

    section: ClassVar[str] = "schema"

    max_past_ms: int = Field(30 * 24 * 3600 * 1000, gt=0)
    max_future_ms: int = Field(10 * 60 * 1000, gt=0)


class ServingSettings(Section):
    """The FastAPI serving process."""

    section: ClassVar[str] = "serving"

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    admin_token: SecretStr = SecretStr("change-me")
    max_candidates: int = Field(500, ge=1, le=500)
    # Champion updates arrive by Redis pub/sub; the pointer is also polled in case one is lost.
    poll_interval_s: float = Field(5.0, gt=0)
    # The prediction/event producer: a bounded queue, so a slow broker costs memory, not time.
    producer_queue_messages: int = Field(100_000, ge=100)
    producer_linger_ms: int = Field(5, ge=0, le=1000)
    producer_message_timeout_ms: int = Field(30_000, ge=1000)
    # The cold-start champion (when the registry has none) predicts this click rate.
    cold_start_prior_ctr: float = Field(0.05, gt=0.0, lt=1.0)
    # Small batches score faster on one intra-op thread than on several.
    torch_threads: int = Field(1, ge=1, le=64)
    access_log: bool = False
    # Per-request Prometheus instrumentation (request count and latency, predictions, score
    # histogram, events, exploration); off, /metrics still shows swaps, errors, the buffer.
    request_metrics: bool = True
    # uvicorn's event loop and HTTP parser; "auto" takes uvloop/httptools when installed.
    loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    http: Literal["auto", "h11", "httptools"] = "auto"
    # Exploration over the first exploration_slots ranks (services/serving/exploration.py);
    # every logged prediction carries the propensity of its rank and the policy.
    exploration: Literal["none", "epsilon", "softmax", "thompson"] = "none"  # BENCHMARKS.md
    exploration_epsilon: float = Field(0.05, ge=0.0, le=1.0)
    exploration_temperature: float = Field(0.5, gt=0.0)
    exploration_slots: int = Field(5, ge=1, le=500)
    # Fresh label statistics of these keys in every candidate's features, fed from `examples`
    # (models/features/label_stats.py, services/serving/label_feed.py); [] (default) = off:
    # they mask the drift alarm that restarts a stale ranking (BENCHMARKS.md, replay).
    label_stats: list[str] = Field(default_factory=list)
    label_stats_memory: float = Field(50.0, ge=0.0)  # labels a value remembers; 0: all
    label_stats_prior: float = Field(5.0, gt=0.0)  # pseudo-labels at the overall rate
    label_stats_capacity: int = Field(1_000_000, ge=1)  # key values kept (LRU)
    label_stats_lookback_ms: int = Field(3_600_000, ge=0)  # read back at start-up


class JoinerSettings(Section):
    """The natural-label joiner."""

    section: ClassVar[str] = "joiner"

    attribution_window_ms: int = Field(30_000, gt=0)
    policy: Literal["impression_required", "all_served"] = "impression_required"
    allowed_lateness_ms: int = Field(5_000, ge=0)
    idle_timeout_ms: int = Field(10_000, gt=0)
    max_event_lead_ms: int = Field(60_000, ge=0)
    max_pending: int = Field(1_000_000, ge=1)
    emit_late_labels: bool = True
    # The worker process (Faust): consumer group, state, commit cadence, metrics endpoint.
    group_id: str = "streamlearn-joiner"
    state_dir: Path = Path(".streamlearn/joiner")
    commit_interval_ms: int = Field(100, ge=10)
    tick_interval_ms: int = Field(1_000, ge=50)
    # Messages stepped together before their outputs are written under one transaction lock.
    batch_max: int = Field(500, ge=1)
    batch_within_ms: int = Field(10, ge=1)
    ticks_topic: str = "streamlearn-joiner-ticks"
    state_topic: str = "streamlearn-joiner-state"
    metrics_port: int = Field(9101, ge=0, le=65535)
    session_timeout_ms: int = Field(10_000, ge=1_000)
    # How far back a (re)assigned worker reads ``examples`` to learn what was already emitted.
    dedup_horizon_ms: int = Field(15 * 60 * 1000, ge=0)


class TrainerSettings(Section):
    """The micro-batch trainer."""

    section: ClassVar[str] = "trainer"

    # triggered: fine-tune and ask the gate only when a trigger fires (TriggerSettings).
    mode: TrainerMode = "stateful"
    # logreg adapted faster than fm after a drift in every quality-bench run (BENCHMARKS.md).
    model: Literal["fm", "logreg", "deepfm", "river_logreg", "river_hoeffding"] = "logreg"
    batch_size: int = Field(512, ge=1)
    max_wait_ms: int = Field(5_000, gt=0)
    # Examples wait until their cohort's labels are in (models.training.batching.CohortBuffer):
    # this long after their prediction. -1: attribution window + lateness + 1 s; 0: no wait.
    cohort_wait_ms: int = Field(-1, ge=-1)
    # Bot guard (models.training.batching.ClickGuard): users with at least guard_min_labels
    # labels and a click rate of guard_max_ctr or more are not learnt from. 0: off.
    guard_min_labels: int = Field(8, ge=0)
    guard_max_ctr: float = Field(0.75, gt=0.0, le=1.0)
    replay_ratio: float = Field(0.0, ge=0.0, le=1.0)
    per_user_cap: int = Field(32, ge=1)
    # Learn with clipped inverse-propensity weights, min(1/propensity, ips_clip) (0: off).
    ips_clip: float = Field(0.0, ge=0.0)
    stateless_window: int = Field(50_000, ge=1)
    hash_bits: int = Field(18, ge=8, le=26)
    # Feature keys whose numbers are categories (one weight per value), e.g. the hour of day.
    categorical_features: list[str] = Field(default_factory=lambda: ["hour"])
    seed: int = 0
    # Trainer core (models.training.batching, models.training.replay, models.training.policies).
    dedup_capacity: int = Field(100_000, ge=1)
    replay_capacity: int = Field(10_000, ge=1)
    stateless_retrain_examples: int = Field(10_000, ge=0)  # 0: not by count
    stateless_retrain_ms: int = Field(60_000, ge=0)  # 0: not by time
    stateless_epochs: int = Field(2, ge=1)
    # The trainer process (services/trainer/service.py): consumer group, cadences, metrics endpoint.
    group_id: str = Field("streamlearn-trainer", min_length=1, max_length=100)
    metrics_port: int = Field(9102, ge=0, le=65535)
    checkpoint_interval_ms: int = Field(5_000, ge=0)  # 0: after every batch
    gate_every_examples: int = Field(4_096, ge=1)
    gate_window_max: int = Field(50_000, ge=1)
    sanity_size: int = Field(1_000, ge=0)  # 0: no sanity set (forgetting check off)
    champion_poll_ms: int = Field(1_000, ge=50)
    lock_ttl_ms: int = Field(15_000, ge=1_000)
    log_interval_s: float = Field(10.0, gt=0)

    def model_hyperparams(self) -> dict[str, Any]:
        """What these settings set on a fresh model (``models.build_model`` keywords): the
        trainer's cold start and stateless retrains, serving's cold start, freshness runs."""
        return {"hash_bits": self.hash_bits, "seed": self.seed,
                "categorical": tuple(self.categorical_features)}


class TriggerSettings(Section):
    """Retraining triggers of ``trainer.mode: triggered`` (``models.triggers.TriggerConfig``:
    same field names; 0 or "none" switches a trigger off)."""

    section: ClassVar[str] = "triggers"

    volume_every_labels: int = Field(10_000, ge=0)
    volume_growth: float = Field(0.0, ge=0.0)
    volume_min_labels: int = Field(1_000, ge=0)
    time_every_ms: int = Field(0, ge=0)
    performance_tolerance: float = Field(0.10, ge=0.0)
    performance_window: int = Field(1_024, ge=2)
    performance_reference: int = Field(2_048, ge=2)
    performance_alpha: float = Field(0.01, gt=0.0, lt=1.0)
    drift_detector: Literal["adwin", "page_hinkley", "none"] = "adwin"
    adwin_delta: float = Field(0.002, gt=0.0, lt=1.0)
    ph_delta: float = Field(0.005, ge=0.0)
    ph_threshold: float = Field(50.0, gt=0.0)
    drift_min_examples: int = Field(30, ge=1)
    # The policy around them: examples kept for the next training, passes over them.
    buffer_max: int = Field(50_000, ge=1)
    epochs: int = Field(1, ge=1)


class DriftSettings(Section):
    """What the trainer monitors for drift besides the loss (``models.drift.monitors``): features
    against a reference window, compared like with like across rankings, served scores, and
    quality by slice."""

    section: ClassVar[str] = "drift"

    # Only these features get a series (a bounded ``feature`` label); {} switches it off.
    features: dict[str, Literal["categorical", "numeric"]] = Field(default_factory=dict)
    reference_size: int = Field(5_000, ge=1)
    window: int = Field(5_000, ge=1)
    bins: int = Field(10, ge=2, le=100)
    max_categories: int = Field(20, ge=1, le=200)
    psi_alarm: float = Field(0.25, gt=0.0)
    # Feature and score PSI/KS are computed (and exported) once per this many examples: the
    # windows are updated every batch, the statistics cost a few ms each.
    report_every_examples: int = Field(2_048, ge=1)
    # Concept drift on the champion's loss, in every mode (triggered mode alarms through its
    # drift trigger instead): adwin, page_hinkley or none.
    loss_detector: Literal["adwin", "page_hinkley", "none"] = "adwin"
    # A concept-drift alarm re-freezes the gate's sanity set from the next examples: a set of
    # the old behaviour would reject every challenger that adapted as "forgetting".
    refresh_sanity_on_alarm: bool = True
    # ...and races a replica that kept this share of the challenger (models.training.race).
    forget_on_drift: float = Field(0.0, ge=0.0, le=1.0)
    score_drift: bool = True
    slice_feature: str = ""  # "" = no slices
    max_slices: int = Field(8, ge=2, le=50)
    slice_window: int = Field(5_000, ge=1)


class GateSettings(Section):
    """The promotion gate."""

    section: ClassVar[str] = "gate"

    min_examples: int = Field(1024, ge=1)
    margin: float = Field(0.0, ge=0.0)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    sanity_tolerance: float = Field(0.01, ge=0.0)
    calibration_tolerance: float = Field(0.25, ge=0.0)
    auc_floor: float = Field(0.55, ge=0.0, le=1.0)
    # The ranking rules (off-policy CTR@k on explored traffic, models.gate.decision).
    ranking_share: float = Field(0.25, gt=0.0, le=1.0)
    ranking_min_explored: int = Field(200, ge=2)


DEV_SIGNING_KEY = "streamlearn-dev-signing-key-do-not-use-in-production"


class RegistrySettings(Section):
    """The model registry in Redis: key prefix, retention, artifact chunking and signing.

    ``signing_key`` is the HMAC secret that authenticates model artifacts. Its default is a
    published development key: anyone who can write to Redis and knows it can plant a model
    that serving will load (river models are pickles, so that means running code). Set
    ``STREAMLEARN_REGISTRY_SIGNING_KEY`` to a long random secret in every real deployment.
    """

    section: ClassVar[str] = "registry"

    prefix: str = Field("streamlearn:", min_length=1, max_length=64)
    line: str = Field("ctr", pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    max_versions: int = Field(20, ge=2)
    max_history: int = Field(200, ge=2)
    rollback_depth: int = Field(5, ge=1, le=100)
    chunk_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    signing_key: SecretStr = SecretStr(DEV_SIGNING_KEY)

    @property
    def uses_dev_key(self) -> bool:
        """True while the signing key is the published development default."""
        return self.signing_key.get_secret_value() == DEV_SIGNING_KEY
