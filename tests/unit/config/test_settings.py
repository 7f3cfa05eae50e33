from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import (
    ConfigError,
    GateSettings,
    JoinerSettings,
    KafkaSettings,
    RedisSettings,
    StackSettings,
    TrainerSettings,
    load,
)


def test_defaults_come_from_yaml() -> None:
    kafka = load(KafkaSettings)
    assert kafka.partitions == 3 and kafka.data_topics == ("predictions", "events", "examples")
    assert load(JoinerSettings).attribution_window_ms == 30_000
    assert load(TrainerSettings).batch_size == 512
    assert load(GateSettings).alpha == 0.05
    assert load(StackSettings).kafka_heap_mb == 512


def test_env_overrides_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLEARN_KAFKA_PARTITIONS", "6")
    monkeypatch.setenv("STREAMLEARN_TRAINER_MODE", "stateless")
    assert load(KafkaSettings).partitions == 6
    assert load(TrainerSettings).mode == "stateless"


def test_trainer_settings_choose_the_categorical_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from models import build_model

    assert load(TrainerSettings).model_hyperparams()["categorical"] == ("hour",)
    monkeypatch.setenv("STREAMLEARN_TRAINER_CATEGORICAL_FEATURES", '["hour", "weekday"]')
    cfg = load(TrainerSettings)
    model = build_model("logreg", **cfg.model_hyperparams())
    assert model.encoder.spec.categorical == ("hour", "weekday")
    rows = model.encoder.encode([{"weekday": 3}])
    assert int(rows.lengths[0]) == 1  # one category entry, not a z-score and a bucket


def test_user_yaml_overrides_defaults_and_env_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text(
        "kafka:\n  partitions: 12\n  events_topic: clicks\njoiner:\n  policy: all_served\n"
    )
    monkeypatch.setenv("STREAMLEARN_CONFIG", str(user))
    kafka = load(KafkaSettings)
    assert (kafka.partitions, kafka.events_topic) == (12, "clicks")
    assert kafka.predictions_topic == "predictions"
    assert load(JoinerSettings).policy == "all_served"
    monkeypatch.setenv("STREAMLEARN_KAFKA_PARTITIONS", "4")
    assert load(KafkaSettings).partitions == 4


def test_missing_user_yaml_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STREAMLEARN_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load(KafkaSettings)


@pytest.mark.parametrize(
    ("cls", "env", "value", "expected"),
    [
        (TrainerSettings, "STREAMLEARN_TRAINER_MODE", "sometimes",
         "invalid trainer setting 'mode' (env STREAMLEARN_TRAINER_MODE): "
         "Input should be 'stateful', 'stateless' or 'triggered', got 'sometimes'"),
        (JoinerSettings, "STREAMLEARN_JOINER_POLICY", "maybe",
         "Input should be 'impression_required' or 'all_served'"),
        (KafkaSettings, "STREAMLEARN_KAFKA_PARTITIONS", "0",
         "invalid kafka setting 'partitions' (env STREAMLEARN_KAFKA_PARTITIONS): "
         "Input should be greater than or equal to 1"),
        (KafkaSettings, "STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS", "localhost",
         "expected host:port[,host:port...]"),
        (RedisSettings, "STREAMLEARN_REDIS_URL", "http://x", "expected redis://host:port/db"),
        (StackSettings, "STREAMLEARN_STACK_KAFKA_HEAP_MB", "2048",
         "Input should be less than or equal to 512"),
    ],
)
def test_invalid_values_name_field_and_allowed_values(
    monkeypatch: pytest.MonkeyPatch, cls: type, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as err:
        load(cls)
    assert expected in str(err.value)


def test_settings_are_frozen() -> None:
    kafka = load(KafkaSettings)
    with pytest.raises(Exception, match="frozen"):
        kafka.partitions = 9  # type: ignore[misc]


def test_unknown_yaml_key_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user = tmp_path / "typo.yaml"
    user.write_text("kafka:\n  partitons: 4\n")
    monkeypatch.setenv("STREAMLEARN_CONFIG", str(user))
    with pytest.raises(ConfigError, match="'partitons'.*Extra inputs are not permitted"):
        load(KafkaSettings)


def test_cli_stops_at_start_with_exit_2_on_bad_config() -> None:
    env = {"STREAMLEARN_KAFKA_PARTITIONS": "many", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "topics", "create"],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "STREAMLEARN_KAFKA_PARTITIONS" in result.stdout
    assert "valid integer" in result.stdout
