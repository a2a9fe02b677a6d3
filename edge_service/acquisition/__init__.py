"""Frame sources: live UVC/V4L2 probes, DICOM files of any vendor, videos, image folders,
session recordings and the phantom, all behind one `FrameSource` interface.

Heavy modules (OpenCV, pydicom) load lazily so `from edge_service.acquisition.frame import
Frame` stays cheap for consumers that only need the data type.
"""

from __future__ import annotations

import importlib
from typing import Any

from edge_service.acquisition.frame import Frame, Roi

_LAZY = {
    "FrameSource": "edge_service.acquisition.source",
    "SourceInfo": "edge_service.acquisition.source",
    "DicomSource": "edge_service.acquisition.dicom",
    "VideoFileSource": "edge_service.acquisition.files",
    "ImageFolderSource": "edge_service.acquisition.files",
    "LiveSource": "edge_service.acquisition.live",
    "RecordingSource": "edge_service.acquisition.factory",
    "PhantomSource": "edge_service.acquisition.factory",
    "open_path": "edge_service.acquisition.factory",
    "open_source": "edge_service.acquisition.factory",
    "SourceSettings": "edge_service.acquisition.settings",
}

__all__ = ["Frame", "Roi", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'edge_service.acquisition' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
