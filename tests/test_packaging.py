"""What a user's site-packages gets: only the bdinn namespace, and a runtime that needs no torch."""

import importlib.metadata
import subprocess
import sys
import sysconfig

import pytest


def test_only_the_bdinn_namespace_is_installed():
    # Look in site-packages itself: an in-tree build leaves a bdinn.egg-info in the checkout.
    site = sysconfig.get_paths()["purelib"]
    dist = next(iter(importlib.metadata.distributions(name="bdinn", path=[site])), None)
    if dist is None:
        pytest.skip(f"bdinn is not installed in {site}")
    if '"editable": true' in (dist.read_text("direct_url.json") or "") or dist.read_text("RECORD") is None:
        pytest.skip("an editable install maps the source folders; CI checks a regular install")
    files = dist.files
    assert files
    top = {f.parts[0] for f in files if not f.parts[0].startswith("..")}
    assert {t for t in top if not t.startswith("bdinn")} == set()
    assert {"train", "export", "runtime", "plugins"}.isdisjoint(top)
    scripts = {
        e.name
        for e in importlib.metadata.entry_points(group="console_scripts")
        if e.value.startswith("bdinn.")
    }
    assert "bdinn-train" in scripts


def test_runtime_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None; import bdinn.runtime.imageio, bdinn.runtime.metrics"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
