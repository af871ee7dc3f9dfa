"""Every shipped UI workflow's widgets_values against the server's /object_info, without a browser: as many values
as the editor makes widgets for each node (seed controls and upload buttons included), each of its input's type,
in its range or among its choices, the same as in the API twin. A widget inserted, removed or moved in a node's
inputs shifts the values of every file that uses the node, and the check says which."""
import copy
import json

import pytest

from e2e.editor.graph_checks import widget_layout_problems, widget_slots
from support.comfy_env import PACK_ROOT

pytestmark = pytest.mark.e2e

WORKFLOWS = PACK_ROOT / "workflows"
NAMES = sorted(p.stem for p in WORKFLOWS.glob("*.json"))


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


def load(name: str) -> tuple[dict, dict]:
    return (json.loads((WORKFLOWS / f"{name}.json").read_text()),
            json.loads((WORKFLOWS / "api" / f"{name}.json").read_text()))


def node(workflow: dict, node_type: str) -> dict:
    return next(n for n in workflow["nodes"] if n["type"] == node_type)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_workflow_widgets_fit_object_info(object_info, name):
    workflow, api = load(name)
    assert not widget_layout_problems(workflow, object_info, api)


def test_the_model_of_the_editor_counts_seed_controls_and_upload_buttons(object_info):
    slots = [kind for _, kind, _ in widget_slots(object_info["KSampler"])]
    assert slots == ["INT", "CONTROL", "INT", "FLOAT", "COMBO", "COMBO", "FLOAT"]
    assert [kind for _, kind, _ in widget_slots(object_info["LoadImage"])] == ["COMBO", "UPLOAD"]
    assert "CONTROL" in [kind for _, kind, _ in widget_slots(object_info["InfuseReferenceOnly"])]   # noise_seed


def test_a_value_removed_from_the_middle_is_caught(object_info):
    workflow, api = load("ip_adapter")
    values = node(workflow, "InfuseIPAdapter")["widgets_values"]
    del values[2]                                   # composition_weight: later values shift one to the left
    problems = widget_layout_problems(workflow, object_info, api)
    assert any(f"{len(values)} widgets_values" in p for p in problems), problems
    assert any("'combine' (COMBO) = 'crop'" in p for p in problems), problems   # the shift shows in the values


def test_swapped_values_are_caught(object_info):
    workflow, _ = load("ip_adapter")
    values = node(workflow, "KSampler")["widgets_values"]
    values[4], values[5] = values[5], values[4]     # sampler_name <-> scheduler
    problems = widget_layout_problems(workflow, object_info)
    assert any("'sampler_name'" in p for p in problems) and any("'scheduler'" in p for p in problems), problems


def test_a_missing_seed_control_is_caught(object_info):
    workflow, _ = load("ip_adapter")
    del node(workflow, "KSampler")["widgets_values"][1]    # "fixed"
    assert widget_layout_problems(workflow, object_info)


def test_a_value_out_of_range_or_of_the_wrong_type_is_caught(object_info):
    workflow, _ = load("ip_adapter")
    node(workflow, "InfuseIPAdapter")["widgets_values"][0] = 99.0          # weight, max 5
    node(workflow, "InfuseIPAdapter")["widgets_values"][9] = "true"        # faceid_v2, a BOOLEAN
    problems = widget_layout_problems(workflow, object_info)
    assert any("'weight'" in p and "outside" in p for p in problems), problems
    assert any("'faceid_v2'" in p and "not a boolean" in p for p in problems), problems


def test_a_value_that_differs_from_the_api_twin_is_caught(object_info):
    workflow, api = load("ip_adapter")
    node(workflow, "InfuseIPAdapter")["widgets_values"][0] = 0.7
    assert any("API twin" in p for p in widget_layout_problems(workflow, object_info, api))


@pytest.mark.parametrize("section", ["required", "optional"])
def test_a_widget_inserted_in_the_middle_of_an_infuse_node_is_caught(object_info, section):
    """What a schema change that adds a widget before others does to the shipped files: the file still holds the
    old values, which now land one widget off."""
    info = copy.deepcopy(object_info)
    adapter = info["InfuseIPAdapter"]
    inputs = list(adapter["input"]["required"].items())
    at = [name for name, _ in inputs].index("weight_type")
    inputs.insert(at, ("new_strength", ["FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0}]))
    if section == "optional":   # an optional widget goes after every required one, so only its count shows
        adapter["input"]["optional"] = {"new_strength": inputs.pop(at)[1], **adapter["input"]["optional"]}
    adapter["input"]["required"] = dict(inputs)
    adapter["input_order"] = {s: list(adapter["input"].get(s, {})) for s in ("required", "optional")}
    for name in ("ip_adapter", "ipadapter_instantid"):
        workflow, api = load(name)
        problems = widget_layout_problems(workflow, info, api)
        assert any("InfuseIPAdapter" in p and "widgets" in p for p in problems), (name, problems)
