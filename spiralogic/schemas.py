"""The API's request and response models. Requests are validated with them and
the OpenAPI document is generated from them, so the two never disagree."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Element = Literal["air", "earth", "water", "fire", "aether"]
Mode = Literal["full", "lite", "fallback"]
OrchestratorId = Literal["baseline", "spiralogic"]
IDENTIFIER = r"^[A-Za-z0-9._:@-]+$"
# Only the message is trimmed: an id with surrounding spaces is a different,
# invalid id, not the same user.
MessageText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class ChatRequest(BaseModel):
    """A user's message to the oracle."""

    model_config = ConfigDict(strict=True, extra="ignore")

    userId: str = Field(min_length=1, max_length=128, pattern=IDENTIFIER, description="Stable id of the user.")
    text: MessageText = Field(description="The message, 1-4000 characters after trimming.")
    element: Optional[Element] = Field(default=None, description="The element the user chose.")
    voice: bool = Field(default=False, description="Queue speech synthesis of the reply.")
    sessionId: Optional[str] = Field(
        default=None, min_length=1, max_length=128, pattern=IDENTIFIER, description="The conversation, if the client keeps one."
    )

    @field_validator("text")
    @classmethod
    def _printable(cls, text: str) -> str:
        # Lone surrogates never get here: strict str validation rejects them.
        if "\x00" in text:
            raise ValueError("text must not contain NUL characters")
        return text


RatingScale = Literal["thumbs", "stars"]


class FeedbackRequest(BaseModel):
    """A user's rating of one of their turns."""

    model_config = ConfigDict(strict=True, extra="ignore")

    userId: str = Field(min_length=1, max_length=128, pattern=IDENTIFIER, description="The user who had the turn.")
    # Lax here only: JSON has no UUID type, so the id arrives as a string.
    turnId: uuid.UUID = Field(strict=False, description="data.turnId of the chat answer being rated.")
    rating: int = Field(
        ge=-1, le=5, description="-1, 0 or 1 (thumbs), or 1-5 (stars). 1 is on both scales: send scale with it."
    )
    scale: Optional[RatingScale] = Field(
        default=None, description="The scale of rating; implied by the rating when it is not 1."
    )
    acceptedChallenge: Optional[bool] = Field(
        default=None, description="Whether the user took up the turn's challenge; only for a turn that offered one."
    )


class FeedbackData(BaseModel):
    feedbackId: str
    turnId: str
    sentiment: Literal[-1, 0, 1] = Field(description="The rating normalised: -1 negative, 0 neutral, 1 positive.")


class FeedbackResponse(BaseModel):
    data: FeedbackData


class FeedbackQueuedData(FeedbackData):
    status: Literal["queued"] = Field(
        description="The database was away: the rating is kept on disk and stored when it is back, after the same checks."
    )


class FeedbackQueuedResponse(BaseModel):
    data: FeedbackQueuedData


class Challenge(BaseModel):
    prompt: str
    intensity: Literal["low", "med", "high"]


class Safety(BaseModel):
    model_config = ConfigDict(extra="allow")

    crisis: bool
    grounding: bool = False


class Voice(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str


class ChatData(BaseModel):
    turnId: str
    message: str
    orchestrator: OrchestratorId
    mode: Mode
    element: Optional[Element]
    archetypes: list[dict[str, Any]]
    challenge: Optional[Challenge]
    safety: Safety
    voice: Optional[Voice]


class ChatMeta(BaseModel):
    latencyMs: int
    firstTokenMs: Optional[int]
    cacheHit: bool
    requestId: str


class ChatResponse(BaseModel):
    data: ChatData
    meta: ChatMeta


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str
    field: Optional[str] = Field(description="The request field at fault, if any.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
