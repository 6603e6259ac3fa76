"""benchmarks/export_report.py: what it is asked to report on."""

from bdinn.runtime import default_model_path


def test_a_checkpoint_and_a_config_together_are_refused(run_benchmark):
    """--config reported on an untrained network and dropped the CHECKPOINT given beside it."""
    done = run_benchmark("export_report", default_model_path("torch"), "--config", "lite")
    assert done.returncode == 2
    assert "give a CHECKPOINT or --config, not both" in done.stderr and done.stdout == ""
