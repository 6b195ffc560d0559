"""How references are written in responses (contract §2.4)."""

from __future__ import annotations

from typing import Any

from vmta.domain.config.virtual_mta import Ref


def redirect_out(ref: Ref | None) -> dict[str, Any] | None:
    """Redirects are written ``{type, id, name}``."""
    if ref is None:
        return None
    return {"type": None if ref.type is None else ref.type.value, "id": ref.id, "name": ref.name}


def ref_out(ref: Ref | None) -> dict[str, Any] | None:
    """References inside routing rules and to templates are written ``{id, name}``."""
    if ref is None:
        return None
    return {"id": ref.id, "name": ref.name}
