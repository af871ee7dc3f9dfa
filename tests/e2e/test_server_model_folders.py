"""A server started on an empty models/ (the e2e server's --base-directory) shows the pack's folders there once
it is up, so users see where the files go."""
import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("folder", ["ipadapter", "instantid", "insightface/models", "photomaker", "pulid"])
def test_the_pack_made_its_model_folder(server, folder):
    assert (server.base / "models" / folder).is_dir(), sorted(p.name for p in (server.base / "models").iterdir())
