"""Data capture (DataCaptureConfig): sampled requests and responses written as JSON Lines."""
