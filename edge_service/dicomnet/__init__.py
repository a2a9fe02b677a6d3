"""Hospital DICOM networking: modality worklist (orders in) and store-and-forward of the
cine, SR and PDF to PACS destinations (C-STORE and DICOMweb STOW-RS). See docs/integration.md."""
