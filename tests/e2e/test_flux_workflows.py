"""The shipped Flux workflows (flux_ipadapter, flux_redux) on a real server, through ComfyUI's own loaders: Load
Diffusion Model on a Flux dev of the real width (1 double + 1 single block: ComfyUI's detection fixes the width),
Load VAE on the Flux VAE, Load Style Model on Redux, Load CLIP Vision on a real-size CLIP ViT-L/14 and SigLIP
so400m-384, Infuse Load IP-Adapter on an XLabs v2 adapter; random weights (tests/e2e/conftest.py write_flux_files).

The prompt's Dual CLIP Loader (T5-XXL) and CLIP Text Encode are replaced by a test node giving a seeded Flux
conditioning (no T5-XXL can be written small: tests/e2e/server_plugins/infuse_test_flux_text.py); every other node
runs as shipped, at 64 px and 2 steps. Each workflow saves an image; weight / strength 0 gives the bytes of the graph
without the Infuse node, a real weight another image; the wrong image encoder is an error naming the node, the input
and the fix, and the server goes on. SigLIP encodes take ~30 s each on a 2-core CPU: the runs are ordered so that
CLIP Vision Encode comes from ComfyUI's cache where it can."""
import json

import pytest

from support.comfy_env import PACK_ROOT
from support.server import assert_named_fault, execution_error
from support.workflow_edits import edit
from test_server import shipped_workflow

pytestmark = pytest.mark.e2e

VIT_L = "clip-vit-large-patch14.safetensors"
SIGLIP = "sigclip_vision_patch14_384.safetensors"


def node_of(wf: dict, class_type: str) -> str:
    (node_id,) = [k for k, n in wf.items() if n["class_type"] == class_type]
    return node_id


def saved(server, entry: dict) -> bytes:
    assert entry["status"]["status_str"] == "success", execution_error(entry) or entry["status"]
    images = server.saved_images(entry)
    assert len(images) == 1 and images[0].stat().st_size > 0
    return images[0].read_bytes()


def without(wf: dict, class_type: str, passes: str, into: str) -> dict:
    """The workflow with the node of `class_type` taken out: what fed its input `passes` goes to its consumer's
    input `into` instead (the nodes only it used are left unconnected, and ComfyUI does not run them)."""
    removed = node_of(wf, class_type)
    source = wf.pop(removed)["inputs"][passes]
    for node in wf.values():
        if node["inputs"].get(into) == [removed, 0]:
            node["inputs"][into] = source
    return wf


@pytest.mark.parametrize("name", ["flux_ipadapter", "flux_redux"])
def test_the_runs_replace_only_the_text_encoding(name):
    shipped = json.loads((PACK_ROOT / "workflows" / "api" / f"{name}.json").read_text())
    run = shipped_workflow(name)
    text = node_of(shipped, "CLIPTextEncode")
    assert run[text]["class_type"] == "TestFluxText"
    assert set(shipped) - set(run) == {node_of(shipped, "DualCLIPLoader")}
    for node_id, node in run.items():
        if node_id != text:
            assert node["class_type"] == shipped[node_id]["class_type"]
            assert {k for k, v in node["inputs"].items() if isinstance(v, list)} == \
                {k for k, v in shipped[node_id]["inputs"].items() if isinstance(v, list)}, node_id


# workflow -> (the Infuse node, its weight input, the input it passes through when removed, its consumer's input)
INFUSE_NODE = {"flux_redux": ("InfuseRedux", "strength", "conditioning", "positive"),
               "flux_ipadapter": ("InfuseIPAdapter", "weight", "model", "model")}


@pytest.mark.parametrize("name", sorted(INFUSE_NODE))
def test_weight_zero_is_the_graph_without_the_infuse_node(server, name):
    class_type, weight, passes, into = INFUSE_NODE[name]
    wf = shipped_workflow(name)
    node = node_of(wf, class_type)
    with_node = saved(server, server.run(wf))
    zero = saved(server, server.run(edit(wf, node, **{weight: 0.0})))     # CLIP Vision Encode from the cache
    plain = saved(server, server.run(without(shipped_workflow(name), class_type, passes, into)))
    assert zero == plain
    assert with_node != plain


@pytest.fixture(scope="module")
def flux_fault_files(model_dirs, tmp_path_factory):
    """Bad Flux adapter files in models/ipadapter; yields the marker a code-running pickle would create."""
    from support import faults_files, flux_adapter_files

    ipa = model_dirs["ipadapter"]
    faults_files.truncated_copy(ipa / "flux-ip-adapter-v2.safetensors", ipa / "fault_flux_truncated.safetensors")
    marker = tmp_path_factory.mktemp("flux_pickle") / "pickle_ran_code"
    image_proj, _ = flux_adapter_files.instantx(3072, 2, tokens=1)
    import torch

    torch.save({"image_proj": image_proj, "ip_adapter": faults_files.OpensFile(marker)}, ipa / "fault_flux_runs_code.bin")
    yield marker
    assert not marker.exists(), "a pickle ran code while being loaded"


def flux_ipa_with_mask(width: int, height: int) -> dict:
    wf = shipped_workflow("flux_ipadapter")
    wf["90"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": width, "height": height}}
    return edit(wf, node_of(wf, "InfuseIPAdapter"), attn_mask=["90", 0])


def with_encoder(name: str, clip_name: str) -> dict:
    wf = shipped_workflow(name)
    return edit(wf, node_of(wf, "CLIPVisionLoader"), clip_name=clip_name)


FLUX_FAULTS = {   # id -> (workflow, node the message names, input, what it says)
    "redux_with_clip_vit_l": (lambda: with_encoder("flux_redux", VIT_L), "Infuse Redux", "clip_vision_output", SIGLIP),
    "xlabs_with_siglip": (lambda: with_encoder("flux_ipadapter", SIGLIP), "Infuse IP-Adapter", "clip_vision",
                          "gives no pooled output, but 'flux-ip-adapter-v2.safetensors'"),
    "sd15_adapter_on_flux": (lambda: shipped_workflow("flux_ipadapter", ipadapter_file="ip-adapter_sd15.safetensors"),
                             "Infuse IP-Adapter", "ipadapter", "is an SD1.5 IP-Adapter but the model is Flux"),
    "flux_adapter_on_sd15": (lambda: shipped_workflow("ip_adapter", ipadapter_file="flux-ip-adapter-v2.safetensors"),
                             "Infuse IP-Adapter", "ipadapter", "is a Flux IP-Adapter XLabs v2 but the model is a SD15"),
    "truncated_flux_adapter": (lambda: shipped_workflow("flux_ipadapter",
                                                        ipadapter_file="fault_flux_truncated.safetensors"),
                               "Infuse Load IP-Adapter", "ipadapter_file", "could not be read; it is truncated"),
    "flux_bin_that_runs_code": (lambda: shipped_workflow("flux_ipadapter", ipadapter_file="fault_flux_runs_code.bin"),
                                "Infuse Load IP-Adapter", "ipadapter_file", "is not a plain weights file"),
    "mask_of_another_aspect": (lambda: flux_ipa_with_mask(64, 16), "Infuse IP-Adapter", "attn_mask", "aspect"),
}


@pytest.mark.parametrize("fault", sorted(FLUX_FAULTS))
def test_flux_faults_name_node_input_and_fix(server, flux_fault_files, fault):
    workflow, node, input_name, says = FLUX_FAULTS[fault]
    assert_named_fault(server, workflow(), node, input_name, says)
