"""The streams family: ``StreamsError`` and what lives under it.

Each error stays beside the code that raises it, under this root::

    StreamsError
    ├── streams.topics.TopicError            the cluster's topics contradict the settings
    └── streams.joiner.policy.JoinerError    an invalid join policy or state record
        └── streams.joiner.scenario.model.ScenarioError

(``streams.schemas._Invalid`` is under it too: a decoder's internal control flow, turned into
a ``DecodeError`` before it leaves the module.)

Example:
    >>> from config.errors import StreamlearnError
    >>> issubclass(StreamsError, StreamlearnError)
    True
"""

from __future__ import annotations

from config.errors import StreamlearnError


class StreamsError(StreamlearnError):
    """Root of every error raised by ``streams``."""
