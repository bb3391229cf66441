"""The one error of a bad archive: 422 ``invalid_archive`` with ``details.reason``."""

from __future__ import annotations

from sessiond.errors import SessiondError

# The reasons an archive is refused, in the order the importer checks them.
REASONS = (
    "truncated",
    "bad_member",
    "member_too_large",
    "bad_manifest",
    "unsupported_version",
    "bad_pack",
    "object_mismatch",
    "missing_reference",
    "invalid_path",
)


class InvalidArchive(SessiondError):
    """The file is not an export this server can import; nothing was written.
    ``reason`` is one of ``REASONS``; ``field`` names the manifest field when there is one."""

    status, code = 422, "invalid_archive"

    def __init__(self, reason: str, message: str, *, field: str | None = None) -> None:
        assert reason in REASONS, reason
        details: dict[str, str] = {"reason": reason}
        if field is not None:
            details["field"] = field
        super().__init__(f"not a valid sessiond export: {message}", details=details)
        self.reason = reason
