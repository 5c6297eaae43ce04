"""Fuzz the console's API from its own OpenAPI document with schemathesis: no 500s, every
answer has a documented status and content type and matches its schema, invalid input is refused.

Bounded in time: a few hundred generated requests (valid and invalid ones, over every
operation) through the app's WSGI interface, with an admin token, so that they reach the
code behind authentication; anonymous ones too.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from feedgen.console.app import create_app
from feedgen.console.registry import Registry
from tests.console_support import console_config
from tests.registry_support import ADMIN, BUYERS, LAPSED, body
from tests.snapshot_helpers import write_feed_run

TOKEN = "fuzz-admin-token"
RUN_ID = "20260101T000000Z-held"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    config = console_config(tmp_path_factory.mktemp("fuzz"))
    app = create_app(config)
    registry: Registry = app.extensions["feedgen_console"]["registry"]
    registry.accounts.add_user(ADMIN, "fuzzer", "admin", "fuzzer-password")
    registry.accounts.issue_token(ADMIN, "fuzzer", TOKEN)
    for kind, template in (("segment", BUYERS), ("segment", LAPSED)):
        draft = registry.save_draft(ADMIN, kind, template, None, "seed")
        registry.publish(ADMIN, template["id"], draft.number)
    registry.save_draft(ADMIN, "segment", body(BUYERS, description="draft"), 1, "seed")
    write_feed_run(Path(config.root), RUN_ID, "2026-01-01T03:00:00Z", {"feed-x": {"o1": {"price": 1}}},
                   status="held")
    yield schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    registry.close()


def test_the_api_survives_its_own_document(schema):
    started = time.monotonic()
    # random ids rarely name something that exists: a third of the cases use ids that do
    known = [schema.include(path_regex=r"\{definition_id\}").as_strategy(path_parameters={"definition_id": d})
             for d in ("buyers", "lapsed-buyers")]
    known.append(schema.include(path_regex=r"\{run_id\}").as_strategy(path_parameters={"run_id": RUN_ID}))
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE),
                      st.one_of(known))
    auth = st.sampled_from([{"Authorization": f"Bearer {TOKEN}"}] * 4 + [{}])

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases, headers=auth)
    def fuzz(case, headers):
        if time.monotonic() - started > 45:
            return  # the time box: what was sent so far was checked
        checks = CHECKS + ([negative_data_rejection] if case.meta and case.meta.generation.mode.is_negative else [])
        case.call_and_validate(headers=headers, checks=checks)

    fuzz()
