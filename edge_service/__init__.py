"""dgs-edge: dynamic ultrasound assessment of sciatic nerve entrapment in the deep gluteal space."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

# Library code only logs; CLI entry points configure handlers.
logging.getLogger(__name__).addHandler(logging.NullHandler())
