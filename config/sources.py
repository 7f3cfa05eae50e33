"""How a settings section reads its values: keywords, environment, a user YAML, the defaults.

``Section`` is the base class of every class in ``config.settings``; ``load`` builds one and
turns pydantic's validation errors into a ``ConfigError`` naming the field and its variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from config import DEFAULTS_YAML
from config.errors import ConfigError

USER_YAML_ENV = "STREAMLEARN_CONFIG"


class Section(BaseSettings):
    """Base class: a YAML section plus ``STREAMLEARN_<SECTION>_`` environment variables."""

    section: ClassVar[str] = ""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.section:
            cls.model_config = SettingsConfigDict(
                **{**cls.model_config, "env_prefix": f"STREAMLEARN_{cls.section.upper()}_"}
            )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        user_yaml = os.environ.get(USER_YAML_ENV)
        if user_yaml:
            sources.append(_section_source(settings_cls, Path(user_yaml), cls.section))
        sources.append(_section_source(settings_cls, DEFAULTS_YAML, cls.section))
        return tuple(sources)


def _section_source(
    settings_cls: type[BaseSettings], path: Path, section: str
) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    source = YamlConfigSettingsSource(settings_cls, yaml_file=path)
    # A missing section means "nothing set here", not an error.
    data = source.yaml_data.get(section) if isinstance(source.yaml_data, dict) else None
    source.yaml_data = data or {}
    source.init_kwargs = source.yaml_data
    return source


S = TypeVar("S", bound="Section")


def describe_error(cls: type[Section], err: ValidationError) -> str:
    """Turn a pydantic error into one line per field, naming the env variable to fix.

    Example:
        >>> from config.settings import TrainerSettings
        >>> try:
        ...     TrainerSettings(mode="sometimes")
        ... except ValidationError as e:
        ...     print(describe_error(TrainerSettings, e))
        invalid trainer setting 'mode' (env STREAMLEARN_TRAINER_MODE): Input should be 'stateful', 'stateless' or 'triggered', got 'sometimes'
    """  # noqa: E501
    lines = []
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "?"
        env = f"STREAMLEARN_{cls.section.upper()}_{field.upper()}"
        got = item.get("input")
        shown = "" if isinstance(got, dict) else f", got {got!r}"
        lines.append(
            f"invalid {cls.section} setting '{field}' (env {env}): {item['msg']}{shown}"
        )
    return "\n".join(lines)


def load(cls: type[S], **overrides: Any) -> S:
    """Build one settings class, turning validation errors into a ConfigError.

    Raises:
        ConfigError: a value is invalid; the message names the field and the allowed values.
    """
    try:
        return cls(**overrides)
    except ValidationError as err:
        raise ConfigError(describe_error(cls, err)) from None
