"""`[procedure]` settings: the thresholds of injection guidance (issue 16).

Defaults and why (sources in docs/procedure.md):
- caution_mm 3: the closest needle-nerve distances reported as safe extraneural placement
  in ultrasound-guided blocks are a few mm; with a ~0.5 mm tip error and a ~1 mm epineurium
  a 3 mm margin leaves time to stop before contact.
- stop_mm 1: under ~1 mm the tip is at the epineurium within the localisation error; needle
  -nerve contact and intraneural injection cannot be told apart on B-mode at that distance.
- lead_s 0.3: a distance alarm compares the distance the tip will have after lead_s at its
  current closing speed (never more than the measured distance): at 8-30 fps a frame is 33-125
  ms and analysis ~100 ms, so a tip advancing at 4 mm/s would otherwise cross 1 mm between the
  frame that shows it and the alarm on the page.
- nerve_refresh_s 0.2 (live only): the nerve and the calcification move with the probe and
  with tissue pushed by a bolus, not with the needle; re-detecting them 5 times a second
  (and at once on a changed image or while the tip rests, when boluses are given) lets the
  needle locator, the geometry and the alarms run on every frame of a 30 fps probe.
  Measured in benchmarks/results/needle_alarm.md (docs/procedure.md "Alarm latency").
- nerve_background false: the detector on its own thread halves the alarm path's CPU per
  frame, but its latency did not separate from the in-line refresh in two runs at a load
  average of 15-21 and it was not measured on a quiet machine; off until it is.
- lost_after_s 0.5: ~15 frames at 30 fps; a tip unseen that long while advancing is the
  moment the in-plane rule ("whole shaft and tip in view", case report 2.4) is broken.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ProcedureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    caution_mm: float = Field(
        default=3.0,
        gt=0,
        le=20,
        description="caution when the tip or projected path is this close to the nerve",
    )
    stop_mm: float = Field(
        default=1.0,
        ge=0,
        le=10,
        description="stop when the tip is this close to the epineurium (or inside)",
    )
    clear_margin_mm: float = Field(
        default=0.5,
        ge=0,
        le=5,
        description="a distance alarm clears only this far beyond its threshold (hysteresis)",
    )
    lead_s: float = Field(
        default=0.3,
        ge=0,
        le=2,
        description="distance alarms look this far ahead at the tip's closing speed (covers frame interval + processing)",
    )
    alarm_track_mm: float = Field(
        default=1.0,
        ge=0,
        le=20,
        description="a tip must have moved this far since it was acquired (or jumped) before it raises distance alarms: a still reflector never does",
    )
    path_alarm: bool = Field(
        default=True,
        description="also caution when the projected path (while advancing) passes within caution_mm",
    )
    lost_after_s: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="needle unseen this long after advancing: 'needle lost' alarm",
    )
    advancing_mm_s: float = Field(
        default=1.0, gt=0, le=50, description="tip speed along the shaft that counts as advancing"
    )
    motion_window_s: float = Field(
        default=0.4, gt=0, le=5, description="window over which tip speed is measured"
    )
    stationary_mm: float = Field(
        default=0.6,
        gt=0,
        le=5,
        description="tip range within the window below which it is stationary",
    )
    pass_min_mm: float = Field(
        default=3.0,
        gt=0,
        le=50,
        description="tip travel along the shaft that makes an advance or a withdrawal",
    )
    redirect_deg: float = Field(
        default=4.0,
        gt=0,
        le=45,
        description="shaft angle change between advances that counts as a redirect",
    )
    jump_mm: float = Field(
        default=6.0,
        gt=0,
        le=50,
        description="a tip moving further than this in one frame is a different reflector",
    )
    on_target_mm: float = Field(
        default=2.5,
        ge=0,
        le=10,
        description="tip within this of the calcification outline (in the ligament): on target",
    )
    min_confidence: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="needle results below this confidence count as not found",
    )
    spread_min_mm2: float = Field(
        default=12.0,
        gt=0,
        le=500,
        description="changed echo area near a stationary tip that starts an injection",
    )
    spread_radius_mm: float = Field(
        default=8.0,
        gt=0,
        le=40,
        description="radius around the tip searched for the spreading echo",
    )
    spread_change: int = Field(
        default=25,
        ge=1,
        le=255,
        description="grey-level change from the pre-injection image that counts as spread",
    )
    injection_end_s: float = Field(
        default=4.0,
        gt=0,
        le=10,
        description="spread not growing this long (or the tip moved pass_min_mm): the injection ended",
    )
    min_injection_s: float = Field(
        default=1.0,
        ge=0,
        le=30,
        description="a spread that grows for less than this is not counted (tissue settling after the tip stops changes the echo for a fraction of a second; an aliquot keeps spreading for seconds)",
    )
    epineurium_mm: float = Field(
        default=0.5,
        ge=0,
        le=5,
        description="spread this close to the nerve outline reaches the epineurium",
    )
    aliquot_ml: float = Field(
        default=0.2,
        gt=0,
        le=5,
        description="planned aliquot (case report 2.4): injections far above it are flagged",
    )
    frozen_after_s: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="identical images this long: 'probe frozen' alarm, guidance suspended",
    )

    nerve_refresh_s: float = Field(
        default=0.2,
        ge=0,
        le=2,
        description="live procedure mode: the nerve/calcification detector runs at least this often (s); frames in between reuse its last outlines while the needle locator, the geometry and the alarms run on every frame; 0 = every frame (the offline pass always detects every frame)",
    )
    nerve_refresh_change: float = Field(
        default=8.0,
        gt=0,
        le=255,
        description="mean grey-level change (sparse grid) from the image of the last nerve detection that makes the next frame re-detect at once (probe moved, bolus)",
    )
    nerve_background: bool = Field(
        default=False,
        description="live procedure mode: run the nerve/calcification detector on its own thread (the analysed frame never waits for it; it uses the last finished detection)",
    )

    @model_validator(mode="after")
    def _order(self) -> ProcedureSettings:
        if self.stop_mm >= self.caution_mm:
            raise ValueError(
                f"stop_mm ({self.stop_mm}) must be below caution_mm ({self.caution_mm})"
            )
        return self
