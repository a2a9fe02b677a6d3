"""The workstation's OpenAPI document (docs/workstation-openapi.json is this, committed;
a test keeps the two equal). `python -m edge_service.workstation.openapi > FILE`."""

from __future__ import annotations

import json
from typing import Any


def openapi_doc() -> dict[str, Any]:
    from edge_service.workstation.app import create_app
    from edge_service.workstation.settings import WorkstationSettings

    app = create_app(None, WorkstationSettings())  # type: ignore[arg-type]  # routes only
    app.state.fanout.close()
    doc = app.openapi()
    doc["info"]["version"] = "1"  # the API contract's version, not the package's
    return doc


def main() -> None:
    print(json.dumps(openapi_doc(), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
