"""Coded concepts shared by the DICOM SR and FHIR.

Standard codes are used where this project is confident of them (SNOMED CT generic
quantities and laterality, DCM, UCUM, LOINC document code); concepts with no established
standard code (sciatic-nerve gliding per 10° internal rotation, fascicular index, ...) use
the local scheme `99DGS` (DICOM private coding scheme designator convention) / FHIR system
`urn:dgs-edge:observation`, documented in docs/integration.md. Local codes are always sent as
well, as an extra coding, so consumers keyed on them keep working."""

from __future__ import annotations

from dataclasses import dataclass

SCT = "SCT"
SCT_URL = "http://snomed.info/sct"
LOCAL = "99DGS"
LOCAL_URL = "urn:dgs-edge:observation"


@dataclass(frozen=True)
class Concept:
    local: str  # local code (always sent)
    display: str
    std: tuple[str, str, str] | None  # (scheme, code, meaning) of a standard generic concept
    unit: str  # UCUM


# result path -> concept. The standard code is the generic quantity (SCT Diameter, Width,
# Area, Length, DCM Distance); the anatomy is carried as finding site / bodySite.
MEASUREMENTS: dict[str, Concept] = {
    "nerve.ap_diameter_mm": Concept("nerve-ap-diameter", "Sciatic nerve AP diameter",
                                    (SCT, "81827009", "Diameter"), "mm"),
    "nerve.width_mm": Concept("nerve-width", "Sciatic nerve width",
                              (SCT, "103355008", "Width"), "mm"),
    "nerve.csa_mm2": Concept("nerve-csa", "Sciatic nerve cross-sectional area",
                             (SCT, "42798000", "Area"), "mm2"),
    "nerve.fascicular_index": Concept("nerve-fascicular-index", "Fascicular pattern index",
                                      None, "1"),
    "calcification.long_axis_mm": Concept("calc-long-axis", "Calcification long axis",
                                          (SCT, "410668003", "Length"), "mm"),
    "calcification.thickness_mm": Concept("calc-thickness", "Calcification thickness", None, "mm"),
    "calcification.nerve_distance_mm": Concept("calc-nerve-distance", "Nerve to calcification",
                                               ("DCM", "121206", "Distance"), "mm"),
    "gliding.excursion_mm": Concept("gliding-excursion", "Nerve gliding excursion", None, "mm"),
    "gliding.per_10deg_ir_mm": Concept("gliding-per-10deg-ir",
                                       "Gliding per 10° internal rotation", None, "mm"),
}  # fmt: skip

# Laterality qualifiers (SNOMED CT).
LATERALITY = {"left": ("7771000", "Left"), "right": ("24028007", "Right")}
# Procedure: SNOMED CT "Ultrasonography" (procedure).
PROCEDURE = (SCT, "16310003", "Ultrasonography")
# Anatomy: no code chosen with confidence for "deep gluteal space"; local code + text.
SITE = (LOCAL, "deep-gluteal-space", "Deep gluteal space (sciatic nerve)")
# FHIR: LOINC document code for a generic "US study" report is not specific enough to
# assert here; the report code is LOINC 18748-4 "Diagnostic imaging study" + local code.
LOINC_URL = "http://loinc.org"
REPORT_LOINC = ("18748-4", "Diagnostic imaging study")
