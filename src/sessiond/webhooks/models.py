"""Request bodies of the webhook routes."""

from __future__ import annotations

from typing import Annotated

from pydantic import StrictBool, StrictStr

from sessiond.models import ApiModel, Declared, NotNull
from sessiond.webhooks.targets import URL_CHARS

TYPES_MAX = 50
TYPE_CHARS = 100
SECRET_MIN, SECRET_MAX = 16, 200

Url = Annotated[StrictStr, Declared(maxLength=URL_CHARS, format="uri")]
Types = Annotated[
    list[Annotated[StrictStr, Declared(minLength=1, maxLength=TYPE_CHARS)]],
    Declared(minItems=1, maxItems=TYPES_MAX),
]
Secret = Annotated[StrictStr, Declared(minLength=SECRET_MIN, maxLength=SECRET_MAX)]


class WebhookCreate(ApiModel):
    url: Url
    # Exact event types or prefixes: "session." or "session.*" (every session event),
    # "*" (every event).
    types: Types
    workspace_id: StrictStr | None = None
    secret: Secret | None = None
    active: StrictBool = True


class WebhookPatch(ApiModel):
    url: Annotated[Url | None, NotNull] = None
    types: Annotated[Types | None, NotNull] = None
    workspace_id: StrictStr | None = None
    secret: Annotated[Secret | None, NotNull] = None
    active: Annotated[StrictBool | None, NotNull] = None
