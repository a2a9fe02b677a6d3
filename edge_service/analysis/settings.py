"""Settings of the gliding tracker, manoeuvre detection and session analysis (pydantic v2).

Every default is documented with where it comes from; the lead composes `AnalysisSettings`
into the root config. Units live in the field names.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrackerSettings(BaseModel):
    """Speckle tracking by normalised cross-correlation block matching.

    Sizes are in mm so that one setting fits every probe depth (the pixel spacing comes
    from the source). A 3-5 MHz curvilinear probe has a speckle grain of ~0.5-1 mm; a
    block must hold several grains to give a unique correlation peak, hence 5 mm.
    """

    model_config = ConfigDict(extra="forbid")

    block_mm: float = Field(default=5.0, gt=0.5, le=30.0, description="side of one matched block")
    blocks_per_side: int = Field(
        default=3,
        ge=1,
        le=7,
        description="blocks per region side (n x n grid, median of their motion)",
    )
    search_mm: float = Field(
        default=2.5, gt=0.1, le=20.0, description="search radius around the predicted position"
    )
    anchor_low: float = Field(
        default=0.55,
        gt=0.0,
        lt=1.0,
        description="re-anchor to the current frame when the median peak NCC falls below this",
    )
    anchor_high: float = Field(
        default=0.75,
        gt=0.0,
        le=1.0,
        description="return to the home reference when its NCC is back above this",
    )
    min_quality: float = Field(
        default=0.3,
        ge=0.0,
        lt=1.0,
        description="below this a frame's displacement is marked unreliable",
    )
    subpixel: str = Field(
        default="gaussian", pattern="^(parabolic|gaussian|lsq5)$", description="3-point peak fit"
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> TrackerSettings:
        if self.anchor_high <= self.anchor_low:
            raise ValueError("anchor_high must be above anchor_low (hysteresis band)")
        return self


class ManoeuvreSettings(BaseModel):
    """Rules that label the angle timeline as neutral, FAIR or seated piriformis stretch.

    Angles are ISB hip angles in degrees (positive = flexion, adduction, internal rotation).
    A movement away from the rest pose is an *episode*; the rest pose is the median of
    the quiet samples. An episode is FAIR when the hip also flexes markedly during it
    (supine/side-lying start), piriformis when the hip is already flexed (seated) at its
    start. Both need internal rotation: it is what tensions the nerve against the ligament.
    """

    model_config = ConfigDict(extra="forbid")

    active_deg: float = Field(
        default=5.0,
        gt=0.0,
        description="deviation from the rest pose (any axis) that starts an episode",
    )
    onset_deg: float = Field(
        default=1.0, gt=0.0, description="episode edges are extended outward until deviation < this"
    )
    min_episode_s: float = Field(default=1.0, ge=0.0, description="shorter episodes are ignored")
    merge_gap_s: float = Field(
        default=0.5, ge=0.0, description="quiet gaps shorter than this are merged"
    )
    min_ir_deg: float = Field(
        default=15.0, description="peak internal rotation a FAIR/piriformis episode must reach"
    )
    fair_min_flexion_gain_deg: float = Field(
        default=30.0, description="flexion gained during the episode for FAIR"
    )
    fair_min_adduction_deg: float = Field(default=5.0, description="peak adduction for FAIR")
    seated_min_flexion_deg: float = Field(
        default=60.0,
        description="hip flexion at the episode start that means 'seated' (piriformis)",
    )
    piriformis_min_adduction_deg: float = Field(
        default=5.0, description="peak adduction for the seated piriformis stretch"
    )


class GlidingRule(BaseModel):
    """When gliding counts as restricted.

    Healthy sciatic nerves glide ~0.1-0.2 mm per degree of internal rotation in the deep
    gluteal space (1-2 mm per 10 deg); a nerve tethered by a calcified ligament glides
    ~0.02-0.04 mm/deg (design.md, phantom classes). The threshold sits between the two
    classes; an excursion below `min_excursion_mm` on a manoeuvre that reached enough IR
    is also restricted. Either needs a fit over at least `min_ir_range_deg` of rotation.
    """

    model_config = ConfigDict(extra="forbid")

    restricted_below_mm_per_10deg: float = Field(
        default=0.6, gt=0.0, description="gliding slope below this = restricted"
    )
    min_excursion_mm: float = Field(
        default=1.0,
        gt=0.0,
        description="peak excursion below this on a full manoeuvre = restricted",
    )
    min_ir_range_deg: float = Field(
        default=15.0, gt=0.0, description="IR range needed to judge gliding at all"
    )


class EvidenceSettings(BaseModel):
    """When a finding counts as measured; below any of these it is `undetermined`.

    Defaults come from the phantom sessions (benchmarks/results/gliding.md and the numbers
    in docs/analysis.md, "Evidence gates"): genuine sessions of both gliding classes fit with
    r² >= 0.9 and a clip-probe correlation >= 0.9, while angles shifted by 3 s or shuffled
    gave r² 0.0-0.4 and correlations below 0.5 (issue 11 reproducers).
    """

    model_config = ConfigDict(extra="forbid")

    min_fit_r2: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="pooled displacement-vs-IR fit below this r² = poor_fit (phantom: >= 0.9; "
        "shuffled or shifted angles: <= 0.4)",
    )
    min_angle_coverage: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="fraction of frames (and of each manoeuvre's frames) that need hip angles",
    )
    max_angle_gap_s: float = Field(
        default=1.0,
        gt=0.0,
        description="angles missing this long once the clip had started = clip_lost",
    )
    min_tracked_fraction: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="fraction of the manoeuvre frames with a reliable displacement",
    )
    min_tracking_quality: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        description="median tracking quality (block-match NCC) over the manoeuvre frames",
    )
    lag_window_s: float = Field(
        default=0.5,
        ge=0.0,
        le=5.0,
        description="clip-probe lag searched and corrected (+-); capture cards add 0.03-0.3 s",
    )
    lag_step_s: float = Field(default=0.02, gt=0.0, description="lag search step")
    min_lag_correlation: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="|Pearson r| of displacement vs IR at the best lag; below = "
        "angles_images_inconsistent (phantom: >= 0.95)",
    )
    still_range_mm: float = Field(
        default=0.5,
        ge=0.0,
        description="nerve displacement range (p5-p95) below this while the hip rotates = no "
        "measurable glide (5x the tracker's 0.1 mm RMS error); judged without the lag",
    )
    min_valid_frames: int = Field(
        default=10, ge=1, description="view-valid frames a session needs to be analysable"
    )
    min_valid_fraction: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="view-valid fraction of all frames a session needs to be analysable",
    )
    min_nerve_frames: int = Field(
        default=5, ge=1, description="frames with the nerve found needed to report its size"
    )
    ci_level: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="confidence level of the reported intervals"
    )
    bootstrap_samples: int = Field(
        default=400, ge=50, le=10000, description="resamples for the bootstrap intervals"
    )


class AnalysisSettings(BaseModel):
    """Session analysis: tracker, manoeuvre rules, gliding rule and summary choices."""

    model_config = ConfigDict(extra="forbid")

    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    manoeuvres: ManoeuvreSettings = Field(default_factory=ManoeuvreSettings)
    gliding: GlidingRule = Field(default_factory=GlidingRule)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    muscle_offset_mm: float = Field(
        default=8.0,
        gt=0.0,
        description="muscle region centre: this far superficial to the nerve box",
    )
    ligament_offset_mm: float = Field(
        default=14.0,
        gt=0.0,
        description="landmark without a calcification: ligament this far medial of the nerve "
        "(the nerve passes ~14 mm from the ischial spine)",
    )
    min_nerve_confidence: float = Field(
        default=0.5, ge=0.0, le=1.0, description="detections below this are not measured"
    )
