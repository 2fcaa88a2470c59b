"""Session-wide test settings: no test writes phantoms into the checkout's data/ folder."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _phantoms_in_the_session_temp_folder(tmp_path_factory):
    """Point SELFMAE_SYNTHETIC (where configs without data.data_dir generate their phantoms) at the session's temp
    folder, so a test that builds a tiny config's data leaves the user's data/synthetic untouched. Tests that set
    their own folder (monkeypatch.setenv) still do."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SELFMAE_SYNTHETIC", str(tmp_path_factory.getbasetemp() / "synthetic"))
        yield

