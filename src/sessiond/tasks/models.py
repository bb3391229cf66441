"""Request bodies of the task routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr

from sessiond.models import ApiModel

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
    tasks: list[TaskItem]


class TaskCreate(ApiModel):
    content: Content
    status: TaskStatus = "pending"
    priority: Priority = "medium"
    position: StrictInt | None = None  # 0-based insert index; omitted: appended


class TaskPatch(ApiModel):
    content: Content | None = None
    status: TaskStatus | None = None
    priority: Priority | None = None
    position: StrictInt | None = None
