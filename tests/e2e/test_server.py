"""A real ComfyUI server with the pack: node listing, a workflow through the real loaders and samplers,
errors that name the node, and a server that keeps answering."""
import pytest

from support.server import execution_error

pytestmark = pytest.mark.e2e


def txt2img(ckpt: str, seed: int = 1, with_sites: bool = True) -> dict:
    wf = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "seed": seed, "steps": 2, "cfg": 5.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "infuse_e2e"}},
    }
    if with_sites:
        wf["8"] = {"class_type": "InfuseAttentionSites", "inputs": {"model": ["1", 0]}}
    return wf


def test_object_info_lists_the_nodes_and_the_pack_imported_cleanly(server):
    info = server.get("/object_info")
    node = info["InfuseAttentionSites"]
    assert node["category"] == "infuse/inspect"
    assert node["display_name"] == "Infuse Attention Sites"
    assert node["input"]["required"]["model"][1]["tooltip"]
    import_lines = [line for line in server.log().splitlines() if "custom_nodes/ComfyUI-Infuse" in line]
    assert import_lines and all("IMPORT FAILED" not in line and "Cannot import" not in line
                                for line in import_lines), server.log()[-3000:]
    assert any("seconds:" in line for line in import_lines)     # in ComfyUI's list of imported custom nodes


def test_extra_model_paths_folder_is_served(server, model_dirs):
    (model_dirs["ipadapter"] / "probe.safetensors").write_bytes(b"")
    assert "probe.safetensors" in server.get("/models/ipadapter")


def test_workflow_runs_through_real_loader_and_sampler(server):
    entry = server.run(txt2img("tiny_sd15.safetensors"))
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = entry["outputs"]["7"]["images"]
    assert len(images) == 1 and server.output_file(images[0]).stat().st_size > 0
    sites_text = "".join(entry["outputs"]["8"]["text"])
    assert "SD1.5 UNet: 16 transformer blocks" in sites_text and "middle:0:0" in sites_text


def test_unsupported_model_error_names_node_and_type_and_server_keeps_running(server):
    entry = server.run(txt2img("tiny_sd21.safetensors", with_sites=True))
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "InfuseAttentionSites"
    assert "Infuse Attention Sites, input 'model': the model is a SD20 model" in error["exception_message"]
    assert "Fix:" in error["exception_message"]
    assert server.alive()
    again = server.run(txt2img("tiny_sd15.safetensors", seed=2, with_sites=False))
    assert again["status"]["status_str"] == "success"


def test_broken_link_is_refused_with_node_errors(server):
    wf = txt2img("tiny_sd15.safetensors")
    wf["8"]["inputs"]["model"] = ["99", 0]
    status, body = server.queue(wf)
    # ComfyUI runs the outputs that validate (the SaveImage branch) and reports the broken one
    assert status == 200 and "8" in body["node_errors"], body
    del wf["7"]
    status, body = server.queue(wf)
    assert status == 400 and body["error"]["type"] == "prompt_outputs_failed_validation"
    assert "8" in body["node_errors"]
    assert server.alive()


def test_shipped_workflows_are_templates_and_run(server):
    from support.comfy_env import PACK_ROOT

    templates = server.get("/api/workflow_templates")
    shipped = sorted(p.stem for p in (PACK_ROOT / "workflows").glob("*.json"))
    assert sorted(templates["ComfyUI-Infuse"]) == shipped
    for name in shipped:
        entry = server.run(shipped_workflow(name))
        assert entry["status"]["status_str"] == "success", (name, entry["status"])


# the test server holds random-weight files under the shipped workflows' example names; only sizes shrink
TEST_INPUTS = {"width": 64, "height": 64, "steps": 2}


def shipped_workflow(name: str, **overrides) -> dict:
    """A shipped API workflow as the e2e tests run it: image sizes and steps shrunk, `overrides` set, and the Flux
    workflows' text encoding (Dual CLIP Loader with T5-XXL + CLIP Text Encode) replaced by a test node giving a
    seeded Flux conditioning, since no T5-XXL can be written small (support.workflow_edits.flux_text_for_tests)."""
    import json

    from support.comfy_env import PACK_ROOT
    from support.workflow_edits import flux_text_for_tests

    wf = flux_text_for_tests(json.loads((PACK_ROOT / "workflows" / "api" / f"{name}.json").read_text()))
    for node in wf.values():
        for key, value in dict(TEST_INPUTS, **overrides).items():
            if key in node["inputs"] and not isinstance(node["inputs"][key], list):
                node["inputs"][key] = value
    return wf
