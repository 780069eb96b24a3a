"""The touchpoint registry: every way a customer can interact with the brand, its channel and owning team."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.errors import BadReason, Rejection
from events.model import TouchpointEvent

DEFAULT_CHANNELS = ("email", "store", "web", "sales", "support")

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[a-z][a-z0-9_.-]*$")]


class Destination(BaseModel):
    """Where a team's alerts go: a webhook receiving a Slack-compatible JSON payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook: Annotated[str, Field(pattern=r"^https?://")]


class Team(BaseModel):
    """A team that owns touchpoints and receives their friction alerts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Id
    description: str = ""
    destinations: tuple[Destination, ...] = ()


class TouchpointDef(BaseModel):
    """One registered touchpoint: its id, the channel it happens on and the team that owns it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$", max_length=128)]
    channel: Id
    owner: Id
    description: str = ""


class Registry(BaseModel):
    """The interaction map: channels, teams and touchpoints, checked for consistency on load."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: tuple[Id, ...] = DEFAULT_CHANNELS
    teams: tuple[Team, ...]
    touchpoints: tuple[TouchpointDef, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        team_ids = {team.id for team in self.teams}
        seen: set[str] = set()
        for touchpoint in self.touchpoints:
            if touchpoint.id in seen:
                msg = f"touchpoint '{touchpoint.id}' is listed twice"
                raise ValueError(msg)
            seen.add(touchpoint.id)
            if touchpoint.channel not in self.channels:
                msg = (
                    f"touchpoint '{touchpoint.id}' uses channel '{touchpoint.channel}', "
                    f"which is not one of {list(self.channels)}"
                )
                raise ValueError(msg)
            if touchpoint.owner not in team_ids:
                msg = f"touchpoint '{touchpoint.id}' is owned by unknown team '{touchpoint.owner}'"
                raise ValueError(msg)
        return self

    def touchpoint(self, touchpoint_id: str) -> TouchpointDef | None:
        """The registered touchpoint with this id, if any."""
        return self._index().get(touchpoint_id)

    def team(self, team_id: str) -> Team | None:
        """The team with this id, if any."""
        return next((team for team in self.teams if team.id == team_id), None)

    def _index(self) -> dict[str, TouchpointDef]:
        index: dict[str, TouchpointDef] | None = self.__dict__.get("_tp_index")
        if index is None:
            index = {touchpoint.id: touchpoint for touchpoint in self.touchpoints}
            object.__setattr__(self, "_tp_index", index)  # a cache, not model state
        return index

    def check(self, event: TouchpointEvent) -> Rejection | None:
        """Reject events for unknown touchpoints or on a channel the touchpoint is not on."""
        touchpoint = self._index().get(event.touchpoint)
        if touchpoint is None:
            return Rejection(
                BadReason.UNKNOWN_TOUCHPOINT,
                f"'{event.touchpoint}' is not in the touchpoint registry",
                "touchpoint",
            )
        if touchpoint.channel != event.channel:
            return Rejection(
                BadReason.CHANNEL_MISMATCH,
                f"'{event.touchpoint}' happens on channel '{touchpoint.channel}', not '{event.channel}'",
                "channel",
            )
        return None
