"""The shipped try-on workflow on a real server: IDM-VTON's release folders (random weights, real layout) in
models/diffusion_models, a real-size ViT-H, the SDXL checkpoint's CLIP and VAE."""
import pytest
from PIL import Image

from support.server import execution_error
from test_server import shipped_workflow

pytestmark = pytest.mark.e2e


def output_image(server, entry):
    return server.output_file(entry["outputs"]["13"]["images"][0])


def test_tryon_runs_at_the_person_size_and_its_parts_change_the_image(server):
    full = server.run(shipped_workflow("tryon"))
    assert full["status"]["status_str"] == "success", full["status"]
    with Image.open(output_image(server, full)) as image:
        assert image.size == (192, 256)                  # person.png's size
    off = shipped_workflow("tryon")
    off["10"]["inputs"].update(garment_weight=0.0, image_prompt_weight=0.0)
    plain = server.run(off)
    assert plain["status"]["status_str"] == "success", plain["status"]
    assert output_image(server, plain).read_bytes() != output_image(server, full).read_bytes()


@pytest.mark.parametrize("change, node_type, expected", [
    # LoadImage's MASK of an image without alpha is 64x64: not the person's size
    ({"10": {"mask": ["4", 1]}}, "InfuseTryOn", "Infuse Try-On, input 'mask': the mask is 64x64 but the person image "
                                               "is 192x256"),
    ({"10": {"model": ["1", 0]}}, "InfuseTryOn", "Infuse Try-On, input 'model': the model takes 4 input channels"),
    ({"10": {"pose": ["5", 0]}}, "InfuseTryOn", "Infuse Try-On, input 'pose': the pose image is 160x200"),
    ({"2": {"tryon_unet": "IDM-VTON/unet_encoder/diffusion_pytorch_model.safetensors"}}, "InfuseLoadIDMVTON",
     "Infuse Load IDM-VTON, input 'tryon_unet'"),
], ids=["mask of another size", "plain SDXL as try-on model", "pose of another aspect", "garment UNet as try-on UNet"])
def test_bad_tryon_inputs_come_back_named_and_the_server_keeps_running(server, change, node_type, expected):
    wf = shipped_workflow("tryon")
    for node, inputs in change.items():
        wf[node]["inputs"].update(inputs)
    error = execution_error(server.run(wf))
    assert error is not None and error["node_type"] == node_type, error
    assert expected in error["exception_message"] and "Fix:" in error["exception_message"]
    assert server.alive()
