"""What the clip keeps across reboots: the boot record and the calibration.

Boot record (`dgsclip_boot.json`): a boot counter (its low 16 bits are the boot id the
host sees in HELLO and STATUS, so it can tell a reboot from a reconnect), the number of
watchdog resets and of resets the firmware itself asked for, and why the last one
happened. Both files go through DirFS.write (atomic) and DirFS.read_valid (recovers a
leftover .tmp or the last good .bak).
"""

from dgsclip import protocol as P
from dgsclip.calib import CalibrationError
from dgsclip.compat import json

BOOT_FILE = "dgsclip_boot.json"


def _check_boot(text):
    d = json.loads(text)
    if not isinstance(d, dict) or not isinstance(d.get("boots"), int):
        raise ValueError("boot record malformed")


def boot_record(fs, reset_cause):
    """Count this boot; returns the record dict (boots, wdt_resets, app_resets, last)."""
    text, src = fs.read_valid(BOOT_FILE, _check_boot)
    rec = {"boots": 0, "wdt_resets": 0, "app_resets": 0, "last": ""}
    if src is not None:
        d = json.loads(text)
        for k in rec:
            if k in d:
                rec[k] = d[k]
    rec["boots"] = (rec["boots"] + 1) & 0xFFFFFFF
    if reset_cause == P.RESET_WATCHDOG:
        rec["wdt_resets"] += 1
        rec["last"] = "watchdog"
    try:
        fs.write(BOOT_FILE, json.dumps(rec))
    except OSError:
        pass  # full or read-only flash: the boot id still changes in RAM via `boots`
    return rec


def note_app_reset(fs, rec, why):
    """Record a reset the firmware is about to do itself (counted, reason kept)."""
    rec["app_resets"] += 1
    rec["last"] = why[:60]
    try:
        fs.write(BOOT_FILE, json.dumps(rec))
    except OSError:
        pass


def load_calibration(fs, cal, name):
    """Restore the stored calibration into `cal`; returns None or a problem to report."""

    def check(text):
        try:
            cal.load_dict(json.loads(text))
        except CalibrationError as exc:
            raise ValueError(str(exc))

    text, src = fs.read_valid(name, check)
    if src is None:
        cal.has_mount = False
        if text is not None:
            return "stored calibration unusable (%s); recalibrate" % text
        return None
    if src:
        return "calibration recovered from %s%s after an interrupted save" % (name, src)
    return None
