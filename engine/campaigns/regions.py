"""Region codes: the default region of phone numbers written without ``+CC``.

Only the regions ``phonenumbers`` has metadata for are taken. A code it does not know (``UK``
for ``GB``, ``AA``) would make every national number of a list a reject, so it is refused up
front with the request instead; the OpenAPI document lists the same codes (schema ``Region``,
written by scripts/openapi_campaigns.py).
"""

from __future__ import annotations

from typing import Annotated, Any

import phonenumbers
from pydantic import AfterValidator, WithJsonSchema

REGIONS: frozenset[str] = frozenset(phonenumbers.SUPPORTED_REGIONS)


def region_problem(value: str) -> str | None:
    """Why ``value`` is not a region code, or None when it is one."""
    if value in REGIONS:
        return None
    return (
        "expected a region code phonenumbers knows (ISO 3166 alpha-2, upper case, such as US"
        f" or GB), got {value!r}"
    )


def _checked(value: str) -> str:
    problem = region_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def region_schema() -> dict[str, Any]:
    """The ``Region`` schema of the OpenAPI document."""
    return {
        "type": "string",
        "enum": sorted(REGIONS),
        "description": "Default region of numbers written without +CC: an ISO 3166 alpha-2"
        " code that phonenumbers has metadata for (e.g. US, GB; the UK is GB).",
    }


# The schema inline (pydantic cannot point at a component it does not generate itself).
Region = Annotated[str, AfterValidator(_checked), WithJsonSchema(region_schema())]
