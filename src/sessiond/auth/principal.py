"""Who is calling: the account and key behind a request, and what its role allows."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("read", "write", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    account_name: str
    key_id: str
    key_name: str
    role: str
    prefix: str

    def allows(self, role: str) -> bool:
        """``admin`` ⊃ ``write`` ⊃ ``read``."""
        return _RANK[self.role] >= _RANK[role]
