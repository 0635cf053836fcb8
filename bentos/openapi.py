"""The OpenAPI document as the service really answers, for clients generated from it and for schemathesis.

BentoML 1.4 documents a 400's `detail` as a string (validation errors carry a list), does not mark request bodies
required (an empty body is a 400), and cannot know about the service's own middleware: the bearer token (401), the
body limit (413), the media type (415) and unknown top-level fields (refused, like a feature row's).
"""

import copy
from typing import Any

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "title": "Message"}},
}
VALIDATION_ERROR = {
    "type": "object",
    "required": ["loc", "msg", "type"],
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
    },
}
BAD_REQUEST = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "title": "Message"},
        "detail": {
            "title": "Error Detail",
            "anyOf": [{"type": "array", "items": VALIDATION_ERROR}, {"type": "string"}],
            "description": "Validation errors, each naming the field (`loc`), or a sentence.",
        },
    },
}
PROBES = ("/livez", "/readyz", "/healthz")


def truthful(document: dict[str, Any], *, token: bool) -> dict[str, Any]:
    """`document` (BentoML's) corrected: request bodies required and closed, errors as they are sent, and the
    middleware's answers (401 when `token`, 413, 415) documented."""
    fixed = copy.deepcopy(document)
    schemas = fixed.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR
    schemas["BadRequest"] = BAD_REQUEST
    for path, operations in fixed.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if token and path not in PROBES:
                responses["401"] = _answer("Missing or invalid bearer token", "Error")
            body = operation.get("requestBody")
            if body is None:
                continue
            body["required"] = True
            for media in body.get("content", {}).values():
                if media.get("schema", {}).get("type") == "object":
                    media["schema"]["additionalProperties"] = False
            responses["400"] = _answer("Bad request: every invalid field named", "BadRequest")
            responses["413"] = _answer("Request body over the size limit", "Error")
            responses["415"] = _answer("A media type other than application/json", "Error")
    return fixed


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
