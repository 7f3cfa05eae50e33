"""Which model serves: the champion holder, its Redis watcher, and the cold start.

Requests read ``ChampionHolder.current`` once and use that object to the end, so a swap (one
reference assignment) never changes a request half-way and never waits for one. The watcher
thread loads the new champion *before* the assignment: a request never sees a half-loaded
model, and a model that fails verification is never assigned at all.

The watcher learns of promotions from the registry's pub/sub channel and, in case a message is
lost (Redis restarted, connection dropped), also polls the champion pointer every
``poll_interval_s``. It always reads the pointer rather than trusting the announcement, so
out-of-order messages cannot bring back an older model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

import redis

from models.errors import RegistryError
from models.learners.base import Model
from services.registry import RedisRegistry, ensure_champion
from services.serving.metrics import ServingMetrics
from services.serving.scoring import Champion

log = logging.getLogger(__name__)

COLD_START_REASON: Final = "cold start: no champion yet (model initialised from the prior CTR)"
_BACKOFF_S: Final = (0.2, 0.5, 1.0, 2.0, 5.0)


class ChampionHolder:
    """The champion being served; None until the first one is loaded."""

    def __init__(self, metrics: ServingMetrics, champion: Champion | None = None) -> None:
        self._metrics = metrics
        self._current: Champion | None = None
        if champion is not None:
            self.swap(champion)

    @property
    def current(self) -> Champion | None:
        """The champion right now (read it once per request)."""
        return self._current

    def swap(self, champion: Champion) -> None:
        """Serve ``champion`` from the next request on (atomic: one reference assignment)."""
        previous = self._current
        self._current = champion
        self._metrics.serve_version(champion.version, previous.version if previous else None)


class ChampionWatcher:
    """Keeps ``holder`` on the registry's champion (a daemon thread).

    Args:
        registry: The model registry.
        holder: What requests read.
        metrics: Swap outcomes.
        build_cold_start: Makes the cold-start model when the registry has no champion.
        poll_interval_s: Fallback poll of the champion pointer.
    """

    def __init__(
        self,
        registry: RedisRegistry,
        holder: ChampionHolder,
        metrics: ServingMetrics,
        build_cold_start: Callable[[], Model],
        poll_interval_s: float = 5.0,
    ) -> None:
        self.registry = registry
        self.holder = holder
        self._metrics = metrics
        self._build = build_cold_start
        self._poll_s = poll_interval_s
        self._refused: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)

    def start(self) -> None:
        """Start watching (the first champion is loaded in the background)."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def refresh(self, announced: bool = False) -> Champion | None:
        """Load the registry's champion if it is not the one served.

        A version whose artifact fails verification is refused (logged, counted) and the
        current model keeps serving; it is retried only when a new announcement arrives.

        Args:
            announced: A pub/sub message triggered this (retry even a refused version).

        Returns:
            The champion served afterwards.
        """
        with self._lock:  # the poll and an admin call may race; load each version once
            current = self.holder.current
            version = self.registry.champion_version()
            if version is None and current is None:
                version = ensure_champion(self.registry, self._build, reason=COLD_START_REASON)
            if version is None or (current is not None and version == current.version):
                return current
            if version == self._refused and not announced:
                return current
            started = time.perf_counter()
            try:
                model = self.registry.load(version)
            except RegistryError as exc:
                self._refused = version
                self._metrics.swaps["refused"].inc()
                log.error("refusing champion %s: %s; still serving %s", version, exc,
                          current.version if current else "nothing")
                return current
            champion = Champion(model, version)
            self.holder.swap(champion)
            self._refused = None
            self._metrics.swaps["loaded"].inc()
            log.warning("now serving %s (was %s; loaded in %.0f ms)", version,
                        current.version if current else "nothing",
                        (time.perf_counter() - started) * 1000)
            return champion

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._watch()
            except (redis.RedisError, OSError, RegistryError) as exc:
                delay = _BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]
                failures += 1
                log.warning("champion watcher: %s; retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
            except Exception:  # never let the watcher die: serving would freeze on a model
                log.exception("champion watcher crashed; restarting it")
                self._stop.wait(1.0)

    def _watch(self) -> None:
        pubsub = self.registry.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.registry.channel)
            self.refresh()  # subscribed first: no promotion can slip in between
            last_poll = time.monotonic()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.25)
                if message is not None:
                    self.refresh(announced=True)
                elif time.monotonic() - last_poll >= self._poll_s:
                    self.refresh()
                    last_poll = time.monotonic()
        finally:
            pubsub.close()
