"""The shipped IP-Adapter workflow on a real server: real loader nodes, a real-size ViT-H CLIP vision file,
adapters in the published layouts; bad input comes back as an error naming node, input and fix."""
import pytest

from support.server import execution_error
from test_server import shipped_workflow

pytestmark = pytest.mark.e2e


def ipadapter_node(wf):
    return next(n for n in wf.values() if n["class_type"] == "InfuseIPAdapter")


def saved(server, entry):
    images = server.saved_images(entry)
    assert images
    return images[0].read_bytes()


def test_ip_adapter_workflow_changes_the_image_and_weight_zero_does_not(server):
    wf = shipped_workflow("ip_adapter")
    with_adapter = server.run(wf)
    assert with_adapter["status"]["status_str"] == "success", with_adapter["status"]
    ipadapter_node(wf)["inputs"]["weight"] = 0.0
    zero = server.run(wf)
    plain = shipped_workflow("ip_adapter")
    plain["9"]["inputs"]["model"] = ["1", 0]                       # KSampler straight from the checkpoint
    del plain["5"]
    without = server.run(plain)
    assert saved(server, zero) == saved(server, without)
    assert saved(server, with_adapter) != saved(server, without)


def test_plus_adapter_uses_hidden_states(server):
    entry = server.run(shipped_workflow("ip_adapter", ipadapter_file="tiny_sd15_ip-adapter-plus.bin",
                                        image="reference.png"))
    assert entry["status"]["status_str"] == "success", entry["status"]


def test_sd15_adapter_on_an_unsupported_model_is_refused(server):
    entry = server.run(shipped_workflow("ip_adapter", ckpt_name="tiny_sd21.safetensors"))
    error = execution_error(entry)
    assert error["node_type"] == "InfuseIPAdapter"
    assert "Infuse IP-Adapter, input 'model': the model is a SD20 model" in error["exception_message"]
    assert server.alive()
