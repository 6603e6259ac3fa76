"""One training or evaluation pair, without torch: the synthetic-pair generator (degrade.py) makes
them and the data loader (data.py) reads them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImagePair:
    """A banded image and its clean version; `source` is the picture both come from."""

    name: str
    banded: Path
    clean: Path
    source: str  # split unit: every pair of one source lands on the same side
    family: str = ""  # degradation stratum (bits, blur-bits, a codec); "" when unknown
