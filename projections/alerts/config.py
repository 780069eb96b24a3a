"""Alert settings resolved into one rule per registered touchpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from projections.alerts.model import CONTACT_VOLUME, DAY, FRICTION_RATE
from projections.durations import format_duration
from projections.journeys import AlertRule, AlertSettings, JourneyModel
from projections.signals import SUPPORT_CHANNEL


@dataclass(frozen=True, slots=True)
class TouchpointRule:
    """The resolved thresholds of one touchpoint (global settings with its overrides applied)."""

    touchpoint: str
    owner_team: str
    channel: str
    enabled: bool
    measure: str
    min_volume: int
    min_signals: int
    min_ratio: float
    sensitivity: float
    cooldown: int


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Settings plus one rule per registered touchpoint."""

    settings: AlertSettings
    rules: Mapping[str, TouchpointRule]

    @property
    def window(self) -> int:
        """Window length in ms."""
        return self.settings.window

    @property
    def kinds(self) -> frozenset[str]:
        """Friction kinds that count towards a touchpoint's friction rate."""
        return frozenset(self.settings.kinds)

    def rule(self, touchpoint: str) -> TouchpointRule | None:
        """The rule of a registered touchpoint."""
        return self.rules.get(touchpoint)

    @property
    def retention(self) -> int:
        """How far back a state keeps window counts: the oldest window any baseline reads."""
        settings = self.settings
        reach = (settings.baseline_windows + settings.span_windows + 1) * settings.window
        return max(settings.seasonal_days * DAY + settings.seasonal_span + settings.window, reach)


def detector_config(model: JourneyModel, settings: AlertSettings | None = None) -> DetectorConfig:
    """Resolve the alert settings of a journey model into one rule per registered touchpoint.

    Support touchpoints default to `contact_volume` (a spike in contacts), the others to
    `friction_rate` (friction signals per event).
    """
    settings = settings if settings is not None else model.settings.alerts
    rules: dict[str, TouchpointRule] = {}
    for touchpoint in model.registry.touchpoints:
        override = settings.per_touchpoint.get(touchpoint.id)

        def pick(name: str, override: AlertRule | None = override) -> Any:
            value = getattr(override, name) if override is not None else None
            return value if value is not None else getattr(settings, name)

        default_measure = CONTACT_VOLUME if touchpoint.channel == SUPPORT_CHANNEL else FRICTION_RATE
        measure = override.measure if override is not None and override.measure else default_measure
        rules[touchpoint.id] = TouchpointRule(
            touchpoint=touchpoint.id,
            owner_team=touchpoint.owner,
            channel=touchpoint.channel,
            enabled=bool(pick("enabled")),
            measure=measure,
            min_volume=int(pick("min_volume")),
            min_signals=int(pick("min_signals")),
            min_ratio=float(pick("min_ratio")),
            sensitivity=float(pick("sensitivity")),
            cooldown=int(pick("cooldown")),
        )
    return DetectorConfig(settings, rules)


def describe_settings(config: DetectorConfig) -> str:
    """The effective settings in one line (for logs and the bench)."""
    settings = config.settings
    return (
        f"window {format_duration(settings.window)}, baseline {settings.baseline_windows} windows + "
        f"{settings.seasonal_days} days ±{format_duration(settings.seasonal_span)}, "
        f"min_volume {settings.min_volume}, sensitivity {settings.sensitivity}σ, min_ratio "
        f"{settings.min_ratio}, cooldown {format_duration(settings.cooldown)}, "
        f"kinds {','.join(settings.kinds)}"
    )
