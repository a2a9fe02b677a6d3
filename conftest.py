"""Root pytest configuration: test layers and the shared harness plugins.

Layers: `unit` (default, pure), `sim` (virtual clip, phantom probe, real broker, real
MicroPython interpreter), `hil` (real hardware, opt-in with --hil; skipped with the reason
when no hardware is attached).
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.harness.paths",
    "tests.harness.broker",
    "tests.harness.serialpty",
    "tests.harness.mpwasm",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hil",
        action="store_true",
        default=False,
        help="run hardware-in-the-loop tests (needs a real clip/probe; see hil_tests/README.md)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--hil"):
        # --hil widens the default marker filter to include the hardware layer.
        config.option.markexpr = ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not any(m.name in ("sim", "hil") for m in item.iter_markers()):
            item.add_marker(pytest.mark.unit)
