"""The rollout's runtime state and the operator's moves through it.

Phases: baseline -> canary (staff, by header) -> beta (a sticky cohort) ->
ga (everyone), and aborted (everyone on baseline, the header still honoured)
from any of them. State lives in the runtime flags, shared by every worker and
host; every move is audited with who, when and why. Promotion is refused while
the promotion gates do not hold, unless forced with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from spiralogic.flags import RuntimeFlags
from spiralogic.gates import Evaluation

PHASES = ("baseline", "canary", "beta", "ga", "aborted")
NEXT_PHASE = {"baseline": "canary", "canary": "beta", "beta": "ga"}


class RolloutRefused(Exception):
    """The move is not allowed now; ``reasons`` says why."""

    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Move:
    actor: str
    reason: str
    now: datetime


class RolloutControl:
    def __init__(self, flags: RuntimeFlags, phase_percent: dict[str, float], gates: Callable[[datetime], Evaluation]):
        self.flags = flags
        self.phase_percent = phase_percent
        self.gates = gates

    def status(self) -> dict[str, Any]:
        flags = self.flags.all(fresh=True)
        return {
            "phase": flags["phase"],
            "percent": flags["percent"],
            "killSwitch": flags["kill_switch"],
            "history": [{**row, "at": row["at"].isoformat()} for row in self.flags.audit(20)],
        }

    def promote(self, move: Move, force: bool = False) -> str:
        phase = self.flags.all(fresh=True)["phase"]
        if phase not in NEXT_PHASE:
            raise RolloutRefused([f"cannot promote from {phase}" + (": run retry first" if phase == "aborted" else "")])
        if not force:
            evaluation = self.gates(move.now)
            if not evaluation.holding:
                raise RolloutRefused(list(evaluation.reasons))
        target = NEXT_PHASE[phase]
        self._set("phase", target, move, ("forced: " if force else "") + move.reason)
        if target in self.phase_percent:
            self._set("percent", self.phase_percent[target], move, f"{target} starts at {self.phase_percent[target]}%")
        return target

    def abort(self, move: Move) -> None:
        self._set("phase", "aborted", move, move.reason)

    def retry(self, move: Move) -> str:
        """Leave ``aborted`` for the phase the rollout was in before it."""
        if self.flags.all(fresh=True)["phase"] != "aborted":
            raise RolloutRefused(["the rollout is not aborted"])
        previous = next(
            (row["value"] for row in self.flags.audit(200) if row["key"] == "phase" and row["value"] not in ("aborted", None)),
            "baseline",
        )
        self._set("phase", previous, move, move.reason)
        return previous

    def set_percent(self, percent: float, move: Move) -> None:
        if not 0 <= percent <= 100:
            raise RolloutRefused([f"percent must be within 0..100, not {percent}"])
        self._set("percent", percent, move, move.reason)

    def kill(self, move: Move, on: bool = True) -> None:
        self._set("kill_switch", on, move, move.reason)

    def _set(self, key: str, value: Any, move: Move, reason: str) -> None:
        self.flags.set(key, value, actor=move.actor, reason=reason, now=move.now)
