"""Hospital integration documents: the order travelling with a session, UIDs under the
configured root, DICOM SR and Encapsulated PDF of the result. See docs/integration.md."""
