"""Hospital DICOM networking: modality worklist (orders in) and store-and-forward of the
cine, SR and PDF to PACS destinations (C-STORE and DICOMweb STOW-RS). See docs/integration.md."""

import logging as _logging

# pynetdicom logs every refused connection/association as ERROR with its own wording; this
# package turns each failure into one typed error (or one queue entry with the reason), so
# its chatter would only repeat that in a worse form.
_logging.getLogger("pynetdicom").setLevel(_logging.CRITICAL)
