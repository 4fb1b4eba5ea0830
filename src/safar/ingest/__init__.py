"""Ingestion: the Segment-compatible HTTP tracking API, validation, import."""
