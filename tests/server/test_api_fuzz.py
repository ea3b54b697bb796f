"""Schemathesis fuzzes the people's API from its own OpenAPI document, on a real server.

Every operation gets a bounded number of generated requests (valid and not):
the people's and SIMX routes with an admin's and a user's token, the worker
routes with a worker's token; none may be a 500 or answer outside its schema.
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
        if isinstance(case.body, dict) and isinstance(case.body.get("wait"), int | float):
            case.body["wait"] = min(case.body["wait"], 0.1)  # a claim's long-poll: kept short
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
        fuzzed = set()
        for result in schema.get_all_operations():
            operation = result.ok()
            workers = "workers" in operation.definition.raw.get("tags", [])
            for role in ("worker",) if workers else ("admin", "alice"):
                fuzz(operation, base, {"Authorization": f"Bearer {tok[role]}"})
            fuzzed.add((operation.method.upper(), operation.path))
        assert len(fuzzed) == len([m for item in document["paths"].values() for m in item])
        assert {("POST", "/api/v1/claim"), ("GET", "/batch/{n}")} <= fuzzed
    text = log.read_text()
    assert "Traceback" not in text and '" 500' not in text
