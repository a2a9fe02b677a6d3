"""`dgs-clip info [--port P] [--json]`: identity, calibration and counters of the clip."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from edge_service.clip.cli_support import (
    CAL_NAMES,
    STATE_NAMES,
    add_port_args,
    no_answer_hint,
    open_link,
)
from edge_service.clip.link import CommandFailed, CommandTimeout
from edge_service.errors import DeviceError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "info",
        help="show the clip's firmware, IMUs, rate, calibration and counters",
        description="Ask the clip who it is (protocol 'info' and 'get_status' commands).",
    )
    add_port_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_link(args) as link:
        try:
            info = link.get_info()
        except CommandTimeout:
            raise DeviceError(no_answer_hint(link)) from None
        try:
            status = asdict(link.get_status())
        except CommandFailed:  # older firmware without get_status
            status = None
        port = link.port
    doc = {"port": port, **asdict(info), "status": status}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"port            {port}")
    print(f"firmware        {info.fw_version}")
    print(f"protocol        {info.proto_major}.{info.proto_minor}")
    print(f"device id       {info.device_id}")
    print(f"IMUs            {', '.join(info.imus) or '-'}")
    print(f"rate            {info.rate_hz} Hz")
    print(f"calibration     {CAL_NAMES.get(info.cal_state, info.cal_state)}")
    print(f"state           {STATE_NAMES.get(info.state, info.state)}")
    if status:
        print(f"samples sent    {status['samples']}")
        print(f"i2c errors      {status['i2c_errors']}")
        print(f"overruns        {status['overruns']}")
        print(f"bad commands    {status['cmd_errors']}")
        print(f"free memory     {status['free_mem']} bytes")
        print(f"uptime          {status['uptime_s']} s")
        if status.get("boot_id") is not None:
            print(f"boot id         {status['boot_id']} (reset cause {info.reset_cause_name})")
            print(f"resets counted  {status['resets']}")
            print(
                f"host stalls     {status['tx_stalls']} (samples dropped on the clip "
                f"{status['ring_dropped']}, ring peak {status['ring_peak']}/"
                f"{status['ring_capacity']})"
            )
    return 0
