"""Train the nerve/calcification segmentation model on phantom data: `python -m models.train`."""
