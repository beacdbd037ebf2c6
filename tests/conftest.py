import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory):
    """A tiny bundle (float32 + int8 of the tiny checkpoint) exported once per session."""
    from converter.jobs import convert as pipeline
    from tests.helpers import tiny_config

    tmp = tmp_path_factory.mktemp("bundle")
    calibration = tmp / "calibration.txt"
    calibration.write_text("the profit rose\nsales fell by 10 %\nnet sales of the company\n")
    pipeline.run_export(tiny_config(tmp), ("float32", "int8"), calibration)
    return tmp / "dist"
