"""Every shipped workflow has an API twin with the same nodes and the same links."""
import json
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))


def test_there_are_workflows():
    assert UI_FILES


@pytest.mark.parametrize("ui_file", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_matches_its_api_twin(ui_file):
    ui = json.loads(ui_file.read_text())
    api = json.loads((WORKFLOWS / "api" / ui_file.name).read_text())
    assert {str(n["id"]): n["type"] for n in ui["nodes"]} == {k: v["class_type"] for k, v in api.items()}
    ui_links = {(str(dst), slot_in, str(src), slot_out) for _, src, slot_out, dst, slot_in, _ in ui["links"]}
    api_links = set()
    for node_id, node in api.items():
        linked = [v for v in node["inputs"].values() if isinstance(v, list)]
        ui_inputs = next(n for n in ui["nodes"] if str(n["id"]) == node_id)["inputs"]
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                slot_in = next(i for i, inp in enumerate(ui_inputs) if inp["name"] == name)
                api_links.add((node_id, slot_in, value[0], value[1]))
        assert len(linked) == sum(1 for inp in ui_inputs if inp.get("link") is not None)
    assert ui_links == api_links
    assert ui["last_node_id"] >= max(n["id"] for n in ui["nodes"])
