"""Request bodies of the task routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr

from sessiond.models import ApiModel, Declared, NotNull

CONTENT_MAX = 10_000
MAX_TASKS = 500

TaskStatus = Literal["pending", "in_progress", "completed", "cancelled"]
Priority = Literal["low", "medium", "high"]
Content = Annotated[StrictStr, Field(min_length=1, max_length=CONTENT_MAX)]


class TaskItem(ApiModel):
    """One task of a ``PUT`` list; ``id`` keeps an existing task (its id and createdAt)."""

    content: Content
    status: TaskStatus = "pending"
    priority: Priority = "medium"
    id: StrictStr | None = None


class TaskList(ApiModel):
    tasks: Annotated[list[TaskItem], Declared(maxItems=MAX_TASKS)]


class TaskCreate(ApiModel):
    content: Content
    status: TaskStatus = "pending"
    priority: Priority = "medium"
    # 0-based insert index (at most the number of tasks); omitted: appended
    position: Annotated[StrictInt, Declared(minimum=0)] | None = None


class TaskPatch(ApiModel):
    content: Annotated[Content | None, NotNull] = None
    status: Annotated[TaskStatus | None, NotNull] = None
    priority: Annotated[Priority | None, NotNull] = None
    position: Annotated[StrictInt | None, NotNull, Declared(minimum=0)] = None
