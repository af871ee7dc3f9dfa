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


def cached_nodes(entry: dict) -> set[str]:
    """The nodes ComfyUI took from its cache instead of running (the execution_cached message of the history)."""
    return {node for kind, data in entry["status"]["messages"] if kind == "execution_cached" for node in data["nodes"]}


@pytest.mark.parametrize("name", ["ip_adapter", "ipadapter_instantid"])
def test_a_new_weight_reuses_the_encoded_reference(server, name):
    """The reference image is encoded by Infuse Encode Image in front of the IP-Adapter: a new weight re-runs the
    adapter and the sampler, while the CLIP vision encoding (~20 s for a ViT-H on a CPU) comes from the cache."""
    wf = shipped_workflow(name)
    encoder = next((k for k, n in wf.items() if n["class_type"] == "InfuseEncodeImage"), None)
    adapter = next(k for k, n in wf.items() if n["class_type"] == "InfuseIPAdapter")
    assert encoder and wf[adapter]["inputs"].get("image_embeds") == [encoder, 0], \
        f"{name}: the IP-Adapter encodes its reference itself, again on every change of its inputs"
    first = server.run(wf)
    assert first["status"]["status_str"] == "success", first["status"]
    wf[adapter]["inputs"]["weight"] = 0.55
    again = server.run(wf)
    assert again["status"]["status_str"] == "success", again["status"]
    cached = cached_nodes(again)
    assert encoder in cached and adapter not in cached, cached


def test_encoding_in_front_gives_the_image_the_adapter_gives_encoding_itself(server):
    from support.workflow_edits import ipadapter_encoding_inline

    shipped = saved(server, server.run(shipped_workflow("ip_adapter")))
    inline = saved(server, server.run(ipadapter_encoding_inline(shipped_workflow("ip_adapter"))))
    assert shipped == inline
