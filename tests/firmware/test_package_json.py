"""firmware/package.json: `mpremote mip install --target / firmware/package.json` from a
checkout installs every firmware file where `dgs-clip flash` puts it (as source)."""

from __future__ import annotations

import json
import subprocess
import sys

import dgsclip
import pytest

from tests.harness.paths import FIRMWARE

PKG = json.loads((FIRMWARE / "package.json").read_text())


def make_package_json() -> dict[str, object]:
    """What firmware/package.json must say (regenerate: python -m tests.firmware.test_package_json)."""
    urls = []
    for p in sorted(FIRMWARE.rglob("*.py")):
        rel = p.relative_to(FIRMWARE).as_posix()
        urls.append([rel if rel in ("main.py", "boot.py") else "lib/" + rel, rel])
    return {"version": dgsclip.VERSION, "urls": urls, "deps": []}


def test_package_json_lists_every_firmware_file_once() -> None:
    assert make_package_json() == PKG, "regenerate: python -m tests.firmware.test_package_json"
    on_disk = {p.relative_to(FIRMWARE).as_posix() for p in FIRMWARE.rglob("*.py")}
    srcs = [src for _dest, src in PKG["urls"]]
    assert sorted(srcs) == sorted(on_disk) and len(set(srcs)) == len(srcs)
    for dest, src in PKG["urls"]:
        assert dest == (src if src in ("main.py", "boot.py") else "lib/" + src)
    assert PKG["version"] == dgsclip.VERSION and PKG.get("deps", []) == []


@pytest.mark.sim
def test_mpremote_mip_installs_the_checkout_on_a_board(mpwasm: object) -> None:
    from edge_service.sim.replboard import ReplBoard

    with ReplBoard() as board:
        pkg = str(FIRMWARE / "package.json")
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "mpremote",
                "connect",
                board.port,
                "mip",
                "install",
                "--target",
                "/",
                pkg,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        for dest, src in PKG["urls"]:
            assert board.read_file("/" + dest) == (FIRMWARE / src).read_bytes(), dest


if __name__ == "__main__":
    (FIRMWARE / "package.json").write_text(json.dumps(make_package_json(), indent=2) + "\n")
