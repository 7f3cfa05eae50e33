"""Scenario presets: how the world's ``State`` changes with the request index.

A scenario is a list of *effects*, small frozen dataclasses that each adjust the state at
request ``n``; presets are named lists of effects and compose with ``+``
(``build("sudden+bot-attack")``). Knobs given to ``build`` set the effect fields of that name
(``drift_at`` moves every drift point of a composed scenario at once). Time is counted in
requests, not seconds, so a run is reproducible whatever the rate the driver achieves.

Example:
    >>> s = build("sudden", seed=1, drift_at=100)
    >>> s.state(99).taste_phase, s.state(100).taste_phase, s.drift_points
    (0.0, 4.0, (100,))
    >>> build("cyclic", requests_per_hour=10).state(25).hour
    10
    >>> build("bot-attack", drift_at="7", bot_share="0.5").state(7).bot_share  # text from a CLI
    0.5
    >>> build("sideways")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    services.simulator.world.SimulatorError: unknown scenario 'sideways'; known: bot-attack, ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from services.simulator.world import Request, SimulatorError, State, World, WorldConfig

DEFAULT_DRIFT_AT = 5_000


class Effect(Protocol):
    def apply(self, index: int, state: State) -> State: ...


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SimulatorError(message)


@dataclass(frozen=True)
class Clock:
    """The simulated hour of day advances one hour every ``requests_per_hour`` requests."""

    requests_per_hour: int = 600
    start_hour: int = 8

    def __post_init__(self) -> None:
        _check(self.requests_per_hour >= 1, "requests_per_hour must be at least 1")
        _check(0 <= self.start_hour < 24, "start_hour must be in 0..23")

    def apply(self, index: int, state: State) -> State:
        return replace(state, hour=(self.start_hour + index // self.requests_per_hour) % 24)


@dataclass(frozen=True)
class SuddenFlip:
    """From ``drift_at`` on, the favourite category moves ``shift`` places round the circle
    (the default 4 of 8 categories: the favourite becomes the least liked)."""

    drift_at: int = DEFAULT_DRIFT_AT
    shift: float = 4.0

    def __post_init__(self) -> None:
        _check(self.drift_at >= 0, "drift_at must be >= 0")

    def apply(self, index: int, state: State) -> State:
        if index < self.drift_at:
            return state
        return replace(state, taste_phase=state.taste_phase + self.shift)


@dataclass(frozen=True)
class GradualRotation:
    """Tastes rotate by ``shift`` categories, linearly over ``duration`` requests."""

    drift_at: int = DEFAULT_DRIFT_AT
    duration: int = 10_000
    shift: float = 4.0

    def __post_init__(self) -> None:
        _check(self.drift_at >= 0, "drift_at must be >= 0")
        _check(self.duration >= 1, "duration must be at least 1")

    def apply(self, index: int, state: State) -> State:
        done = min(max((index - self.drift_at) / self.duration, 0.0), 1.0)
        return replace(state, taste_phase=state.taste_phase + self.shift * done)


@dataclass(frozen=True)
class HourCycle:
    """Each category has its own best hour of day; ``amplitude`` in logit units."""

    amplitude: float = 1.2

    def apply(self, index: int, state: State) -> State:
        return replace(state, hour_amplitude=self.amplitude)


@dataclass(frozen=True)
class Burst:
    """A rare event (Black Friday): for ``duration`` requests from ``drift_at``, tastes move
    ``shift`` categories and traffic is ``rate`` times the usual; then all returns to normal."""

    drift_at: int = DEFAULT_DRIFT_AT
    duration: int = 3_000
    shift: float = 2.0
    rate: float = 3.0

    def __post_init__(self) -> None:
        _check(self.drift_at >= 0, "drift_at must be >= 0")
        _check(self.duration >= 1, "duration must be at least 1")
        _check(self.rate > 0, "rate must be > 0")

    def apply(self, index: int, state: State) -> State:
        if not self.drift_at <= index < self.drift_at + self.duration:
            return state
        return replace(state, taste_phase=state.taste_phase + self.shift,
                       rate=state.rate * self.rate)


@dataclass(frozen=True)
class ColdStart:
    """A steady stream of new users and items: the active windows slide forward."""

    new_users_per_1000: int = 100
    new_items_per_1000: int = 20

    def __post_init__(self) -> None:
        _check(min(self.new_users_per_1000, self.new_items_per_1000) >= 0,
               "new_users_per_1000 and new_items_per_1000 must be >= 0")

    def apply(self, index: int, state: State) -> State:
        return replace(state,
                       user_offset=state.user_offset + index * self.new_users_per_1000 // 1000,
                       item_offset=state.item_offset + index * self.new_items_per_1000 // 1000)


@dataclass(frozen=True)
class BotAttack:
    """From ``drift_at`` (for ``duration`` requests, 0 = to the end), a share of the requests
    comes from bots that click nearly everything they are shown."""

    drift_at: int = DEFAULT_DRIFT_AT
    duration: int = 0
    bot_share: float = 0.2

    def __post_init__(self) -> None:
        _check(self.drift_at >= 0 and self.duration >= 0, "drift_at and duration must be >= 0")
        _check(0.0 <= self.bot_share <= 1.0, "bot_share must be in [0, 1]")

    def apply(self, index: int, state: State) -> State:
        end = self.drift_at + self.duration if self.duration else None
        if index < self.drift_at or (end is not None and index >= end):
            return state
        return replace(state, bot_share=self.bot_share)


PRESETS: dict[str, tuple[Callable[..., Effect], ...]] = {
    "stationary": (),
    "sudden": (SuddenFlip,),
    "gradual": (GradualRotation,),
    "cyclic": (HourCycle,),
    "rare-event": (Burst,),
    "cold-start": (ColdStart,),
    "bot-attack": (BotAttack,),
}


def scenario_names() -> list[str]:
    """The preset names ``build`` accepts (compose them with ``+``)."""
    return sorted(PRESETS)


@dataclass(frozen=True)
class Scenario:
    """A named, seeded list of effects: ``state(n)`` is the world's state at request ``n``."""

    name: str
    seed: int
    effects: tuple[Effect, ...]
    base: State = State()

    def state(self, index: int) -> State:
        state = self.base
        for effect in self.effects:
            state = effect.apply(index, state)
        return state

    @property
    def drift_points(self) -> tuple[int, ...]:
        """Request indices where a drift starts (for recovery accounting), sorted."""
        return tuple(sorted({e.drift_at for e in self.effects if hasattr(e, "drift_at")}))

    def world(self, config: WorldConfig | None = None) -> World:
        """The population this scenario's seed draws."""
        return World.create(config, self.seed)

    def request(self, world: World, index: int) -> Request:
        return world.request(index, self.state(index))


def build(name: str, seed: int = 0, **knobs: Any) -> Scenario:
    """The scenario ``name`` (presets joined by ``+``) with ``knobs`` set on its effects.

    Raises:
        SimulatorError: unknown preset or knob, or a knob value an effect refuses.
    """
    parts = [p.strip() for p in name.split("+")]
    unknown = [p for p in parts if p not in PRESETS]
    if unknown:
        raise SimulatorError(
            f"unknown scenario {unknown[0]!r}; known: {', '.join(scenario_names())}")
    kinds: list[Callable[..., Effect]] = [Clock]
    for part in parts:
        kinds += [k for k in PRESETS[part] if k not in kinds]
    fields = {k: {f.name for f in dataclasses.fields(k)} for k in kinds}  # type: ignore[arg-type]
    accepted = set().union(*fields.values())
    extra = sorted(set(knobs) - accepted)
    if extra:
        raise SimulatorError(f"scenario {name!r} has no knob {extra[0]!r}; "
                             f"knobs: {', '.join(sorted(accepted))}")
    effects = tuple(k(**{n: _coerce(k, n, v) for n, v in knobs.items() if n in fields[k]})
                    for k in kinds)
    return Scenario("+".join(parts), seed, effects)


def _coerce(kind: Callable[..., Effect], name: str, value: Any) -> Any:
    """A knob given as text (from a command line) takes the type of the field's default."""
    if not isinstance(value, str):
        return value
    default: Any = next(f.default for f in dataclasses.fields(kind)  # type: ignore[arg-type]
                   if f.name == name)
    try:
        return type(default)(value)
    except ValueError:
        raise SimulatorError(f"knob {name!r}: {value!r} is not a {type(default).__name__}",
                             ) from None
