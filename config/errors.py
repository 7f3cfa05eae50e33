"""The root of every exception streamlearn raises, and the configuration's own.

Each top-level package has one family under ``StreamlearnError``, rooted in its ``errors``
module: ``models.errors.ModelError``, ``streams.errors.StreamsError`` and
``services.errors.ServicesError``; ``ConfigError`` is the config package's. A caller that only
wants "streamlearn refused this" catches ``StreamlearnError``. ``config`` is the bottom layer,
so every package may import this module (``models`` imports nothing else from ``config``).

Example:
    >>> issubclass(ConfigError, StreamlearnError)
    True
"""

from __future__ import annotations


class StreamlearnError(Exception):
    """Root of every error raised by streamlearn's own code."""


class ConfigError(StreamlearnError):
    """An invalid configuration value; the message names the field and what is allowed."""
