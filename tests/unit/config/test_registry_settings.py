"""RegistrySettings: YAML defaults, the dev signing key flag, validation of the line name."""

from __future__ import annotations

import pytest

from config.settings import ConfigError, RegistrySettings, load


def test_yaml_defaults_match_the_class_and_flag_the_dev_key() -> None:
    cfg = load(RegistrySettings)
    defaults = {name: f.default for name, f in RegistrySettings.model_fields.items()}
    assert cfg.model_dump() == defaults
    assert (cfg.prefix, cfg.line, cfg.chunk_bytes) == ("streamlearn:", "ctr", 4 * 1024 * 1024)
    assert cfg.uses_dev_key


def test_signing_key_from_the_environment_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLEARN_REGISTRY_SIGNING_KEY", "s3cr3t-from-a-vault")
    cfg = load(RegistrySettings)
    assert not cfg.uses_dev_key
    assert "s3cr3t" not in repr(cfg)
    assert cfg.signing_key.get_secret_value() == "s3cr3t-from-a-vault"


def test_bad_line_name_names_the_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLEARN_REGISTRY_LINE", "CTR-v2")
    with pytest.raises(ConfigError, match="STREAMLEARN_REGISTRY_LINE"):
        load(RegistrySettings)
