"""Schemathesis fuzzes the people's API from its own OpenAPI document, on a real server.

Every operation gets a bounded number of generated requests (valid and not) with
an admin's and a user's token; none may be a 500 or answer outside its schema.
The worker routes belong to the worker session's tests and are fuzzed there.
"""

from __future__ import annotations

import hypothesis
import schemathesis
from api_helpers import call, make_accounts
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from server_helpers import running_server

EXAMPLES = 25
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def fuzz(operation, base: str, headers: dict[str, str]) -> None:
    """Bounded, reproducible examples of one operation; any failed check raises."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy())
    def run(case):
        case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)

    run()


def test_fuzz_the_api(queue_url, tmp_path):
    tok = make_accounts(queue_url).tokens
    log = tmp_path / "serve.log"
    with running_server(log) as (_, base):
        # Some rows, so that IDs and listings have something to find.
        call(
            base,
            "POST",
            "/api/v1/batches",
            token=tok["alice"],
            data=b"name: f\ncommand: x\nn_runs: 3\n",
        )
        status, document = call(base, "GET", "/api/v1/openapi.json", token=tok["alice"])
        assert status == 200
        schema = schemathesis.openapi.from_dict(document)
        fuzzed = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            if "workers" in operation.definition.raw.get("tags", []):
                continue
            for role in ("admin", "alice"):
                fuzz(operation, base, {"Authorization": f"Bearer {tok[role]}"})
                fuzzed += 1
        assert fuzzed >= 30
    text = log.read_text()
    assert "Traceback" not in text and '" 500' not in text
