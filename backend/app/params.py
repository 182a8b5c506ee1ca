"""Path and query parameters the read routers share (bounds, paging, addresses).

Here, beside ``deps.py``, rather than in one router: the routers that use them
(reads, pools, metrics) then import none of each other's parameters, and the
portfolio in ``reads`` can use the pools router's position view without a circle.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from backend.app.errors import ApiError
from backend.app.schemas import checksum_address

# Every integer the database compares is a signed 64-bit column: bound them here, so
# an out-of-range id is a 422 with a reason instead of a database overflow (500).
INT64_MAX = 2**63 - 1
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX, description="rows to skip")]
IdQuery = Annotated[int | None, Query(ge=0, le=INT64_MAX)]
IdPath = Annotated[int, Path(ge=0, le=INT64_MAX)]


def address_param(value: str, field: str) -> str:
    """A checksummed address from a path or query value; 422 with the reason if bad."""
    try:
        return checksum_address(value)
    except ValueError as exc:  # PydanticCustomError is a ValueError
        raise ApiError(422, "ValidationFailed", f"{field}: {exc}") from exc
