"""Deep-gluteal ultrasound phantom: frames, ground-truth masks and session recordings."""

from __future__ import annotations

from edge_service.phantom.session import simulate_session
from edge_service.phantom.settings import PhantomConfig
from edge_service.phantom.simulator import PhantomFrame, PhantomSimulator

# Bumped whenever rendered pixels change for the same seed and config: training-data caches
# and the model card key on it. 2: calcification strongly hyperechoic, loss behind it.
# 3: realism knobs (bone cortex brightness/thickness, rounded spine, fasciae, attenuation
# vs TGC, beam width/focus; PhantomConfig.realistic()); defaults render as revision 2.
PHANTOM_REVISION = 3

__all__ = [
    "PHANTOM_REVISION",
    "PhantomConfig",
    "PhantomFrame",
    "PhantomSimulator",
    "simulate_session",
]
