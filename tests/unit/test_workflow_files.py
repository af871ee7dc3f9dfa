"""Every shipped workflow has an API twin with the same nodes and the same links (Note nodes are the editor's own
and have none), a title and one-line description, a Note naming each model file with its folder and where it is
published, a view it opens readable at, and a square card image for the template browser."""
import json
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))
UI_ONLY = {"Note", "MarkdownNote"}          # frontend-only nodes: never in API format
READABLE_SCALE = 0.75                       # tests/e2e/editor/graph_checks.py: below it text is small or gone
# (API class_type, input) -> the folder under ComfyUI/models/ the file goes in
MODEL_INPUTS = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("InfuseIPAdapterLoader", "ipadapter_file"): "ipadapter",
    ("InfuseLoadInstantID", "instantid_file"): "instantid",
    ("InfuseLoadPuLID", "pulid_file"): "pulid",
    ("InfuseLoadPhotoMaker", "photomaker_file"): "photomaker",
    ("InfuseLoadPuLID", "eva_clip"): "clip_vision",
    ("InfuseLoadPuLID", "face_parser"): "facexlib",
    ("InfuseLoadIDMVTON", "tryon_unet"): "diffusion_models",
    ("InfuseLoadIDMVTON", "garment_unet"): "diffusion_models",
    ("InfuseFaceAnalysis", "model_pack"): "insightface/models",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("StyleModelLoader", "style_model_name"): "style_models",
}


def load(ui_file):
    return json.loads(ui_file.read_text()), json.loads((WORKFLOWS / "api" / ui_file.name).read_text())


def test_there_are_workflows():
    assert UI_FILES


@pytest.mark.parametrize("ui_file", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_matches_its_api_twin(ui_file):
    ui, api = load(ui_file)
    nodes = [n for n in ui["nodes"] if n["type"] not in UI_ONLY]
    assert {str(n["id"]): n["type"] for n in nodes} == {k: v["class_type"] for k, v in api.items()}
    ui_links = {(str(dst), slot_in, str(src), slot_out) for _, src, slot_out, dst, slot_in, _ in ui["links"]}
    api_links = set()
    for node_id, node in api.items():
        linked = [v for v in node["inputs"].values() if isinstance(v, list)]
        ui_inputs = next(n for n in nodes if str(n["id"]) == node_id)["inputs"]
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                slot_in = next(i for i, inp in enumerate(ui_inputs) if inp["name"] == name)
                api_links.add((node_id, slot_in, value[0], value[1]))
        assert len(linked) == sum(1 for inp in ui_inputs if inp.get("link") is not None)
    assert ui_links == api_links
    assert ui["last_node_id"] >= max(n["id"] for n in ui["nodes"])
    assert ui["last_link_id"] >= max((link[0] for link in ui["links"]), default=0)


@pytest.mark.parametrize("ui_file", UI_FILES, ids=lambda p: p.stem)
def test_workflow_has_a_title_a_description_and_a_note_of_its_models(ui_file):
    ui, api = load(ui_file)
    info = ui["extra"].get("infuse", {})
    assert info.get("title") and info.get("description") and "\n" not in info["description"], ui["extra"]
    assert info["title"] != ui_file.stem and info["description"] != ui_file.stem
    notes = [n for n in ui["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1, "one Note listing the models"
    text = notes[0]["widgets_values"][0]
    assert text.startswith(f"{info['title']}\n{info['description']}\n"), text[:300]
    lines = text.splitlines()
    files = [(node["class_type"], name, value) for node in api.values() for name, value in node["inputs"].items()
             if (node["class_type"], name) in MODEL_INPUTS]
    assert files, "no model file"
    for class_type, name, value in files:
        where = f"models/{MODEL_INPUTS[class_type, name]}/{value}"
        at = [i for i, line in enumerate(lines) if where in line]
        assert at, f"the Note does not say where {class_type}.{name} = {value!r} goes ({where})"
        source = lines[at[0] + 1].strip() if at[0] + 1 < len(lines) else ""
        assert source.startswith("from ") and len(source) > 12, f"no source after {where}: {source!r}"


@pytest.mark.parametrize("ui_file", UI_FILES, ids=lambda p: p.stem)
def test_workflow_opens_at_a_readable_view(ui_file):
    """extra.ds is the view the editor opens a template at (Comfy.EnableWorkflowViewRestore, on by default);
    without it the editor fits the graph to the window, which for the larger graphs is below the zoom the editor
    draws text at. The e2e editor test checks the nodes fit the canvas at this view."""
    ds = load(ui_file)[0]["extra"].get("ds")
    assert ds and ds["scale"] >= READABLE_SCALE and len(ds["offset"]) == 2, ds


@pytest.mark.parametrize("ui_file", UI_FILES, ids=lambda p: p.stem)
def test_template_card_image_fills_the_card(ui_file):
    """The template browser shows <name>.jpg in a 256 px square (object-contain): a wide strip would be a sliver."""
    from PIL import Image

    with Image.open(ui_file.with_suffix(".jpg")) as image:
        width, height = image.size
    assert min(width, height) >= 256 and 0.8 <= width / height <= 1.25, (width, height)
