"""The baseline orchestrator: the existing Matrix Oracle voice, one generation step."""

from __future__ import annotations

from spiralogic import hookimpl
from spiralogic.turn import Draft


class BaselineOrchestrator:
    def respond(self, turn, services) -> Draft:
        return Draft(text=services.generate(services.prompt_for(turn)))


@hookimpl
def register_orchestrators(register):
    register("baseline", lambda context: BaselineOrchestrator())
