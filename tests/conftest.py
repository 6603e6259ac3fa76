"""Shared fixtures: real banded/clean pairs made from the bundled pictures."""

from pathlib import Path

import pytest

from bdinn.runtime.imageio import from_float, read_image, to_float, write_image

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def paired_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """The bundled pictures quantised to 4 bits: (banded_dir, clean_dir), matched by name."""
    from bdinn.train.degrade import reduce_bit_depth

    root = tmp_path_factory.mktemp("pairs")
    for path in sorted(DATA.glob("*.png")):
        clean = read_image(path)
        write_image(root / "clean" / path.name, clean)
        write_image(root / "banded" / path.name, from_float(reduce_bit_depth(to_float(clean), 4), 8))
    return root / "banded", root / "clean"
