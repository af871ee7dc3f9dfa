"""FaceID's LoRA goes in through ComfyUI's weight patches: W' = W + strength * up @ down on q/k/v/out of every
attention processor (attn1 and attn2), as the reference LoRA processors compute it."""
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.mechanisms.decoupled_attention.ipadapter import apply_faceid_lora
from comfyui_infuse.mechanisms.loaders.ipadapter_file import parse_ipadapter
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from support import ipadapter_files as f


def faceid_adapter(tiny, name, model, rank=4):
    _, cfg = tiny.MODELS[name]
    sites = model_sites(model)
    data = {"image_proj": f.image_proj("faceid", cross=cfg["context_dim"]),
            "ip_adapter": f.ip_layers([s.inner_dim for s in sites], cfg["context_dim"], lora_rank=rank)}
    return parse_ipadapter(data, "faceid.bin")


@pytest.mark.parametrize("name", ["tiny_sd15", "tiny_sdxl"])
def test_lora_patches_every_projection_of_every_processor(tiny, name):
    model = tiny.build_model(name, seed=2)
    adapter = faceid_adapter(tiny, name, model)
    sites = model_sites(model)
    m = model.clone()
    assert apply_faceid_lora(m, adapter, 0.6) == len(sites) * 2 * 4
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    m.patch_model(device_to=torch.device("cpu"))
    try:
        after = m.model.state_dict()
        for n, site in enumerate(sites):
            for index, attn in ((2 * n, "attn1"), (2 * n + 1, "attn2")):
                for proj, module in (("to_q", "to_q"), ("to_k", "to_k"), ("to_v", "to_v"), ("to_out", "to_out.0")):
                    key = f"diffusion_model.{site.path}.{attn}.{module}.weight"
                    up = adapter.lora[f"{index}.{proj}_lora.up.weight"]
                    down = adapter.lora[f"{index}.{proj}_lora.down.weight"]
                    torch.testing.assert_close(after[key], before[key] + 0.6 * up @ down, rtol=0, atol=1e-6)
    finally:
        m.unpatch_model()
    restored = model.model.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in before.items())


def test_zero_strength_adds_no_patch(tiny):
    model = tiny.build_model("tiny_sd15")
    m = model.clone()
    assert apply_faceid_lora(m, faceid_adapter(tiny, "tiny_sd15", model), 0.0) == 0
    assert not m.patches


def test_lora_for_another_family_is_refused(tiny):
    sd15 = tiny.build_model("tiny_sd15")
    adapter = faceid_adapter(tiny, "tiny_sd15", sd15)
    with pytest.raises(InfuseError, match="is an SD1.5 IP-Adapter but the model is SDXL"):
        apply_faceid_lora(tiny.build_model("tiny_sdxl").clone(), adapter, 1.0)
