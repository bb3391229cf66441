"""approvals routes (being built)."""

from __future__ import annotations

from fastapi import APIRouter

from sessiond.http.schemas import ERRORS

router = APIRouter(tags=["approvals"], responses=ERRORS)
