"""The integrator contract: AsyncAPI document, JSON Schemas and topic tree agree."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from edge_service.mqtt import topics
from edge_service.mqtt.validation import FILES
from tests.harness.paths import REPO

ASYNCAPI = REPO / "docs" / "asyncapi.yaml"


def test_every_schema_is_valid_draft_2020_12():
    for name in FILES.values():
        schema = json.loads((REPO / "edge_service" / "schemas" / name).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)


def test_asyncapi_covers_every_payload_schema_and_topic():
    doc = yaml.safe_load(ASYNCAPI.read_text())
    assert doc["asyncapi"].startswith("3.")
    refs = {m["payload"]["schema"]["$ref"] for m in doc["components"]["messages"].values()}
    files = {Path(r).name for r in refs}
    assert files == set(FILES.values())
    for r in refs:
        assert (ASYNCAPI.parent / r).resolve().is_file(), r
    addresses = {c["address"] for c in doc["channels"].values()}
    example = {
        topics.status("{site}", "{device}"),
        topics.live("{site}", "{device}", "angles"),
        topics.live("{site}", "{device}", "measurements"),
    }
    assert example <= addresses
    for leaf in ("events", "result", "fhir"):
        assert f"dgs/v1/{{site}}/{{device}}/sessions/{{session_id}}/{leaf}" in addresses
    for op in doc["operations"].values():
        assert op["channel"]["$ref"].split("/")[-1] in doc["channels"]


def test_topic_parse_roundtrip():
    t = topics.session("site-a", "dgs-01", "s-1", "result")
    assert topics.parse(t) == {"site": "site-a", "device": "dgs-01", "kind": "result",
                               "session_id": "s-1"}  # fmt: skip
    assert topics.parse("other/v1/a/b/status") is None
    assert topics.subscription("site-a") == "dgs/v1/site-a/+/#"
