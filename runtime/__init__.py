"""Inference side of bdinn: image/video I/O, metrics and backends; importable without torch."""

from .backends import BackendError
from .debander import Debander, default_model_path

__all__ = ["BackendError", "Debander", "default_model_path"]
