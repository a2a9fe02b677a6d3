"""Fuzz layer (issue 12): the clip frame decoder, the DICOM reader, the recording reader, the
config loader and the MQTT payload builders fed arbitrary inputs. Property: only the
project's typed errors (`DgsError`: InputError, ConfigError, DeviceError, ...) come out.

Bounded for CI (the whole module runs in well under a minute here); the committed corpus
(tests/fuzz/corpus/) is replayed first on every run, and `python -m benchmarks fuzz` runs the
same targets far longer. `database=None`: every run is the same size and nothing is written.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.strategies import STRATEGIES
from tests.fuzz.targets import TARGETS, corpus_inputs

#: Examples per target in CI, sized so each target takes a few seconds here.
CI_EXAMPLES = {"decoder": 400, "dicom": 150, "recording": 150, "config": 300, "payloads": 300}


def _fuzz_settings(name: str) -> settings:
    return settings(
        max_examples=CI_EXAMPLES[name],
        deadline=None,  # a slow example is not a failure; a wrong exception is
        database=None,
        derandomize=True,  # CI: the same inputs every run; the benchmark explores further
        suppress_health_check=list(HealthCheck),
    )


CORPUS = [(name, fname, data) for name in TARGETS for fname, data in corpus_inputs(name)]


def test_corpus_covers_every_target() -> None:
    assert {name for name, _, _ in CORPUS} == set(TARGETS)


@pytest.mark.parametrize(("name", "fname", "data"), CORPUS, ids=[f"{n}/{f}" for n, f, _ in CORPUS])
def test_corpus_replays_with_typed_errors_only(name: str, fname: str, data: Any) -> None:
    TARGETS[name]()(data)


def _make(name: str) -> Any:
    target = TARGETS[name]()

    @_fuzz_settings(name)
    @given(STRATEGIES[name]())
    def fuzz(data: Any) -> None:
        target(data)

    return fuzz, target


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_only_typed_errors(name: str) -> None:
    fuzz, target = _make(name)
    fuzz()
    assert target.tried >= CI_EXAMPLES[name] // 2, f"{name}: only {target.tried} inputs tried"
