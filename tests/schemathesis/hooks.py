"""Schemathesis hooks (SCHEMATHESIS_HOOKS) of tests/test_openapi_fuzz.py and the longer run.

They remove what the document states in words but JSON Schema cannot express, and keep each
case short; they do not hide answers.
"""

from __future__ import annotations

import schemathesis

WAIT_SECONDS = 0.2
"""`wait` is lowered to this (the server caps it at 60 s): a long poll ends quickly."""


@schemathesis.hook
def filter_case(context, case) -> bool:
    """A subscription may not dead-letter into its own topic (400, as the document says)."""
    body = case.body if isinstance(case.body, dict) else {}
    topic = (case.path_parameters or {}).get("topic")
    return topic is None or body.get("dead_letter_topic") != topic


@schemathesis.hook
def map_query(context, query):
    if query and isinstance(query.get("wait"), int | float) and query["wait"] > WAIT_SECONDS:
        query["wait"] = WAIT_SECONDS
    return query
