from pathlib import Path

import pytest

from idface.testing.rawdata import write_raw_dataset


@pytest.fixture(scope="session")
def prepared_eval(tmp_path_factory) -> Path:
    from idface.training.prepare import prepare

    raw = write_raw_dataset(tmp_path_factory.mktemp("raw_eval"), n=6, seed=5)
    out = tmp_path_factory.mktemp("prepared_eval")
    prepare(raw, out, size=64, progress=False, log=lambda *a: None)
    return out
