"""Session recordings (design.md contract #2): crash-safe writer and reader."""

from edge_service.recording.importer import import_cine
from edge_service.recording.meta import SessionMeta
from edge_service.recording.reader import Recording, open_recording
from edge_service.recording.writer import RecordingWriter

__all__ = ["Recording", "RecordingWriter", "SessionMeta", "import_cine", "open_recording"]
