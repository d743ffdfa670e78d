"""An example Spiralogic guardrail: tags every turn and eases stormy ones.

``assess_input`` runs before any text is generated: it tags the turn (the tag
ends up in the telemetry row under ``metadata.guardrails``) and, when the
message mentions a storm, asks the voice to offer grounding.
``shape_response`` runs on the finished draft and appends a marker sentence,
so you can see in a reply that the plugin ran.
"""

from __future__ import annotations

import re

from spiralogic import hookimpl
from spiralogic.turn import Assessment

MARKER = " (Checked by the example guardrail.)"
STORM = re.compile(r"\bstorm\b", re.IGNORECASE)


@hookimpl
def assess_input(turn):
    assessment = Assessment(tags={"example_guardrail": "seen"})
    if STORM.search(turn.text):
        assessment.instructions.append("offer grounding")
    return assessment


@hookimpl
def shape_response(turn, draft):
    draft.text += MARKER
