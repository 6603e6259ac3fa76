"""Inference side of bdinn: image/video I/O, metrics and backends; importable without torch."""
