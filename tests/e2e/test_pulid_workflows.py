"""The shipped PuLID workflows (pulid_sdxl, pulid_flux) on a real server: Infuse Load PuLID on PuLID files in their
published layouts (SDXL v1.1 / v1 for the tiny SDXL, PuLID-Flux for the real-width 1 + 1-block Flux), EVA02-CLIP-L-336
at its real size in EVA-CLIP's own checkpoint, facexlib's BiSeNet, the test antelopev2 pack; random weights
(tests/e2e/conftest.py write_pulid_files). Flux's prompt comes from a test node as in test_flux_workflows.py.

Weight 0 gives the bytes of the graph without Infuse PuLID, a real weight another image; Face Similarity scores the
generated image (a 64 px random image has no face: its score is the no-face value and a note, not a failed run);
bad files and inputs are errors naming the node, the input and the fix, before sampling, and the server goes on."""
import pytest
import torch

from support.server import assert_named_fault, execution_error
from support.workflow_edits import edit
from test_flux_workflows import node_of, without
from test_server import shipped_workflow

pytestmark = pytest.mark.e2e


def saved(server, entry: dict, wf: dict) -> bytes:
    assert entry["status"]["status_str"] == "success", execution_error(entry) or entry["status"]
    image = entry["outputs"][node_of(wf, "SaveImage")]["images"][0]
    return server.output_file(image).read_bytes()


@pytest.mark.parametrize("name", ["pulid_sdxl", "pulid_flux"])
def test_weight_zero_is_the_graph_without_pulid_and_a_weight_changes_the_image(server, name):
    wf = shipped_workflow(name)
    with_pulid = saved(server, server.run(wf), wf)
    zero = saved(server, server.run(edit(wf, node_of(wf, "InfusePuLID"), weight=0.0)), wf)
    plain = without(shipped_workflow(name), "InfusePuLID", "model", "model")
    assert zero == saved(server, server.run(plain), plain)
    assert with_pulid != zero


def test_face_similarity_scores_the_generated_image_the_photo_itself_and_no_face(server):
    """The generated 64 px image gets a line of the report (the test detector may or may not see a face in it);
    the reference photo scored against itself is 1; a photo without a face scores the no-face value, with a note,
    and the run succeeds. Only the similarity node re-runs when its images change."""
    wf = shipped_workflow("pulid_sdxl")
    similarity = node_of(wf, "InfuseFaceSimilarity")
    generated = server.run(wf)
    assert generated["status"]["status_str"] == "success", execution_error(generated)
    shown = generated["outputs"][similarity]
    assert shown["images"] and server.output_file(shown["images"][0]).stat().st_size > 0
    assert shown["text"][0].startswith("image 1: "), shown["text"]
    wf["91"] = {"class_type": "LoadImage", "inputs": {"image": "face.png"}}
    itself = server.run(edit(wf, similarity, images=["91", 0]))["outputs"][similarity]["text"]
    assert itself[0].startswith("image 1: 1.0000"), itself
    wf["91"]["inputs"]["image"] = "no_face.png"
    entry = server.run(wf)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    report, note = entry["outputs"][similarity]["text"]
    assert report.startswith("image 1: no face") and note.startswith("No face in image(s) 1: scored -1"), (report, note)


def test_sdxl_v1_bin_file_runs_too(server):
    wf = shipped_workflow("pulid_sdxl", pulid_file="pulid_v1.bin")
    v1 = saved(server, server.run(wf), wf)
    v1_1 = shipped_workflow("pulid_sdxl")
    assert v1 != saved(server, server.run(v1_1), v1_1)


@pytest.fixture(scope="module")
def pulid_fault_files(model_dirs):
    """PuLID files of one version laid out as the other: a v1 IDEncoder without its mapping_patch_* (converted as
    if v1.1), a v1.1 IDFormer without latents / proj_out (converted as if v1)."""
    from safetensors.torch import load_file, save_file

    folder = model_dirs["pulid"]
    v1 = torch.load(folder / "pulid_v1.bin", weights_only=True)
    save_file({k: v for k, v in v1.items() if ".mapping_patch_" not in k},
              str(folder / "fault_pulid_v1_as_v1.1.safetensors"))
    v1_1 = load_file(str(folder / "pulid_v1.1.safetensors"))
    save_file({k: v for k, v in v1_1.items() if k not in ("id_adapter.latents", "id_adapter.proj_out")},
              str(folder / "fault_pulid_v1.1_as_v1.safetensors"))


PULID_FAULTS = {   # id -> (workflow, node the message names, input, what it says)
    "v1_file_converted_as_v1_1": (lambda: shipped_workflow("pulid_sdxl", pulid_file="fault_pulid_v1_as_v1.1.safetensors"),
                                  "Infuse Load PuLID", "pulid_file", "is an IDEncoder (PuLID SDXL v1) that lacks"),
    "v1_1_file_converted_as_v1": (lambda: shipped_workflow("pulid_sdxl", pulid_file="fault_pulid_v1.1_as_v1.safetensors"),
                                  "Infuse Load PuLID", "pulid_file", "is an IDFormer (PuLID SDXL v1.1 / Flux) that lacks"),
    "no_eva_clip": (lambda: shipped_workflow("pulid_sdxl", eva_clip="CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"),
                    "Infuse Load PuLID", "eva_clip", "holds no EVA-CLIP image tower"),
    "no_face_in_the_reference": (lambda: shipped_workflow("pulid_flux", image="no_face.png"),
                                 "Infuse Face Analysis", "image", "no face was found in image 1"),
    "flux_file_on_sdxl": (lambda: shipped_workflow("pulid_sdxl", pulid_file="pulid_flux_v0.9.1.safetensors"),
                          "Infuse PuLID", "model", "is PuLID Flux but the model is a SDXL model"),
    "sdxl_file_on_flux": (lambda: shipped_workflow("pulid_flux", pulid_file="pulid_v1.1.safetensors"),
                          "Infuse PuLID", "model", "is PuLID SDXL v1.1 but the model is a Flux model"),
    "sd15_model": (lambda: shipped_workflow("pulid_sdxl", ckpt_name="v1-5-pruned-emaonly.safetensors"),
                   "Infuse PuLID", "model", "PuLID SDXL needs an SDXL model"),
}


@pytest.mark.parametrize("fault", sorted(PULID_FAULTS))
def test_pulid_faults_name_node_input_and_fix(server, pulid_fault_files, fault):
    workflow, node, input_name, says = PULID_FAULTS[fault]
    assert_named_fault(server, workflow(), node, input_name, says)
