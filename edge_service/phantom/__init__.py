"""Deep-gluteal ultrasound phantom: frames, ground-truth masks and session recordings."""

from __future__ import annotations

from edge_service.phantom.session import simulate_session
from edge_service.phantom.settings import PhantomConfig
from edge_service.phantom.simulator import PhantomFrame, PhantomSimulator

__all__ = ["PhantomConfig", "PhantomFrame", "PhantomSimulator", "simulate_session"]
