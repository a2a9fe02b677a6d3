"""Clip configuration: defaults, validation and the JSON file on the clip's filesystem.

Every key has a unit in its name where it has one. validate() rejects unknown keys, wrong
types and out-of-range values with a message naming the key, so a bad `set_config` is NAKed
and a bad file is reported instead of half-applied.
"""

from dgsclip.compat import json

CONFIG_FILE = "dgsclip.json"
CALIBRATION_FILE = "dgsclip_cal.json"

# key: (default, type, allowed) where allowed is (min, max) for numbers or a tuple of choices.
SCHEMA = {
    "side": ("left", str, ("left", "right")),
    "rate_hz": (100, int, (50, 200)),
    "imu": ("auto", str, ("auto", "mpu6050", "lsm6ds")),
    "pelvis_imu": (False, bool, None),  # look for a second IMU on the pelvis
    "i2c_id": (0, int, (0, 1)),
    "i2c_sda_pin": (4, int, (0, 48)),
    "i2c_scl_pin": (5, int, (0, 48)),
    "i2c_freq_hz": (400000, int, (100000, 1000000)),
    "accel_range_g": (4, int, (2, 16)),
    "gyro_range_dps": (500, int, (250, 2000)),
    "kp": (0.5, float, (0.0, 20.0)),
    "ki": (0.0, float, (0.0, 0.0)),  # integral term not in the fixed-point filter
    "accel_reject_g": (0.1, float, (0.01, 1.0)),
    "still_gyro_dps": (3.0, float, (0.5, 20.0)),
    "bias_tau_s": (2.0, float, (0.1, 60.0)),
    "neutral_ms": (3000, int, (500, 10000)),
    "functional_ms": (20000, int, (3000, 60000)),
    "status_period_ms": (1000, int, (100, 60000)),
    "wdt_timeout_ms": (4000, int, (1000, 8000)),
    "autostart": (False, bool, None),
    # Samples the ring holds while the host does not read: 3000 = 30 s at 100 Hz
    # (78 kB, 102 kB with a pelvis IMU; allocated once at boot, halved until it fits:
    # 750 slots in the 192 kB heap of the Cortex-M0 benchmark image).
    "ring_samples": (3000, int, (64, 12000)),
    "fifo": (True, bool, None),  # sample through the IMU's hardware FIFO where it has one
    "i2c_timeout_us": (20000, int, (1000, 1000000)),  # per transfer (machine.I2C timeout)
}


class ConfigError(ValueError):
    pass


def defaults():
    d = {}
    for k in SCHEMA:
        d[k] = SCHEMA[k][0]
    return d


def validate(update, base=None):
    """Merged copy of base (defaults if None) with update applied; raises ConfigError."""
    if not isinstance(update, dict):
        raise ConfigError("config must be a JSON object")
    out = dict(base) if base is not None else defaults()
    for k in update:
        if k not in SCHEMA:
            raise ConfigError("unknown config key %r (known: %s)" % (k, ", ".join(sorted(SCHEMA))))
        v = update[k]
        _d, typ, allowed = SCHEMA[k]
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise ConfigError("config %s must be %s, got %r" % (k, typ.__name__, v))
        if allowed is not None:
            if typ is str:
                if v not in allowed:
                    raise ConfigError(
                        "config %s must be one of %s, got %r" % (k, "/".join(allowed), v)
                    )
            elif not (allowed[0] <= v <= allowed[1]):
                raise ConfigError(
                    "config %s must be in %s..%s, got %r" % (k, allowed[0], allowed[1], v)
                )
        out[k] = v
    return out


def fusion_settings(cfg):
    return {
        "kp": cfg["kp"],
        "ki": cfg["ki"],
        "accel_reject_g": cfg["accel_reject_g"],
        "still_gyro_dps": cfg["still_gyro_dps"],
        "bias_tau_s": cfg["bias_tau_s"],
    }


def load(fs):
    """(config, problem) from the config file; defaults and the reason when it is bad."""
    text = fs.read(CONFIG_FILE)
    if text is None:
        return defaults(), None
    try:
        return validate(json.loads(text)), None
    except (ValueError, ConfigError) as exc:
        return defaults(), "%s: %s; using defaults" % (CONFIG_FILE, exc)


PAGE_KEYS = 6  # keys per get_config page: the longest page stays well under 234 bytes


def page(cfg, n):
    """JSON text of config page n: {"page": n, "pages": N, key: value, ...}; None if past."""
    keys = sorted(cfg)
    pages = (len(keys) + PAGE_KEYS - 1) // PAGE_KEYS
    if n >= pages:
        return None
    d = {"page": n, "pages": pages}
    for k in keys[n * PAGE_KEYS : (n + 1) * PAGE_KEYS]:
        d[k] = cfg[k]
    return json.dumps(d)


def dumps(cfg):
    return json.dumps(cfg)
