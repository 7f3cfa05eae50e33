"""The services family: ``ServicesError`` and what lives under it.

Each error stays beside the code that raises it, under this root::

    ServicesError
    ├── services.serving.scoring.FeatureLimitError (also ValueError)  a request too wide to log
    ├── services.serving.exploration.ExplorationError (also ValueError)  a bad exploration setting
    ├── services.trainer.state.StateError       a stored trainer state that cannot be read
    ├── services.trainer.store.LockError        another trainer holds this group's state
    ├── services.simulator.world.SimulatorError (also ValueError)    a simulator setup refused
    │   ├── services.simulator.report.ReportError                   simulate output unusable
    │   └── services.simulator.movielens.DatasetError  MovieLens not fetched, or not the files
    ├── services.local.stack.process.StackError  the local stack would not start or stop
    ├── services.ops.prometheus.PrometheusError  no Prometheus binary, or it never got ready
    └── services.ops.render.RenderError          a query refused or a panel not on the board

Example:
    >>> from config.errors import StreamlearnError
    >>> issubclass(ServicesError, StreamlearnError)
    True
"""

from __future__ import annotations

from config.errors import StreamlearnError


class ServicesError(StreamlearnError):
    """Root of every error raised by ``services``."""
