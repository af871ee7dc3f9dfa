"""The shipped PhotoMaker workflows on a real server: photomaker_v2 (Face Analysis buffalo_l, Infuse Load PhotoMaker
on photomaker-v2.bin with the real CLIP ViT-L/14 tower and a LoRA on every UNet attention, Infuse PhotoMaker) and
photomaker_instantid (PhotoMaker v2 and InstantID on one SDXL model from one Face Analysis); random weights
(tests/e2e/conftest.py write_photomaker_files).

PhotoMaker off (start_percent 1, LoRA 0) gives the bytes of the graph with CLIP Text Encode of the prompt without
the trigger word; on, another image; InstantID acts on top of it; bad prompts, photos, files and models are errors
naming the node, the input and the fix, before sampling, and the server goes on."""
import pytest

from support.server import assert_named_fault, execution_error
from support.workflow_edits import add, edit
from test_flux_workflows import node_of
from test_server import shipped_workflow

pytestmark = pytest.mark.e2e


def saved(server, wf: dict) -> bytes:
    entry = server.run(wf)
    assert entry["status"]["status_str"] == "success", execution_error(entry) or entry["status"]
    image = entry["outputs"][node_of(wf, "SaveImage")]["images"][0]
    return server.output_file(image).read_bytes()


def test_photomaker_off_is_the_prompt_without_the_trigger_and_on_changes_the_image(server):
    wf = shipped_workflow("photomaker_v2")
    pm, sampler = node_of(wf, "InfusePhotoMaker"), node_of(wf, "KSampler")
    on = saved(server, wf)
    off = saved(server, edit(shipped_workflow("photomaker_v2"), pm, start_percent=1.0, lora_strength=0.0))
    text = shipped_workflow("photomaker_v2")[pm]["inputs"]["text"].replace(" img", "")
    plain = add(shipped_workflow("photomaker_v2"), "95", "CLIPTextEncode", text=text, clip=["1", 1])
    plain = edit(plain, sampler, model=["1", 0], positive=["95", 0])
    assert off == saved(server, plain)
    assert on != off


def test_instantid_acts_on_top_of_photomaker(server):
    wf = shipped_workflow("photomaker_instantid")
    both = saved(server, wf)
    no_instantid = edit(shipped_workflow("photomaker_instantid"), node_of(wf, "InfuseInstantID"), adapter_weight=0.0,
                        identitynet_strength=0.0)
    assert both != saved(server, no_instantid)


def with_photos(wf: dict, second: str) -> dict:
    """The workflow with a batch of two photos (face.png and `second`), Face Analysis passing a faceless one through."""
    add(wf, "96", "LoadImage", image=second)
    add(wf, "97", "ImageBatch", image1=["2", 0], image2=["96", 0])
    for node in wf.values():
        for name, value in node["inputs"].items():
            if value == ["2", 0] and node["class_type"] != "ImageBatch":
                node["inputs"][name] = ["97", 0]
    return edit(wf, node_of(wf, "InfuseFaceAnalysis"), no_face="pass_through")


def with_text(text: str, **inputs) -> dict:
    wf = shipped_workflow("photomaker_v2")
    return edit(wf, node_of(wf, "InfusePhotoMaker"), text=text, **inputs)


PHOTOMAKER_FAULTS = {   # id -> (workflow, node the message names, input, what it says)
    "no_trigger_word": (lambda: with_text("a photo of a man, natural light"), "Infuse PhotoMaker", "text",
                        "the prompt does not contain the word 'img'"),
    "trigger_word_of_two_tokens": (lambda: with_text("a photo of a man photomaker", trigger_word="photomaker"),
                                   "Infuse PhotoMaker", "trigger_word", "is 2 tokens in CLIP's vocabulary"),
    "more_photos_than_faces": (lambda: with_photos(shipped_workflow("photomaker_v2"), "no_face.png"),
                               "Infuse PhotoMaker", "face_embeds", "no face was found in reference image(s) 2"),
    "v1_file_with_v2_inputs": (lambda: shipped_workflow("photomaker_v2", photomaker_file="photomaker-v1.bin"),
                               "Infuse PhotoMaker", "face_embeds", "is PhotoMaker v1, which takes no face embedding"),
    "sd15_model": (lambda: shipped_workflow("photomaker_v2", ckpt_name="v1-5-pruned-emaonly.safetensors"),
                   "Infuse PhotoMaker", "model", "PhotoMaker is made for SDXL; the model is SD15"),
}


@pytest.mark.parametrize("fault", sorted(PHOTOMAKER_FAULTS))
def test_photomaker_faults_name_node_input_and_fix(server, fault):
    workflow, node, input_name, says = PHOTOMAKER_FAULTS[fault]
    assert_named_fault(server, workflow(), node, input_name, says)
