"""EVA02-CLIP's image tower for PuLID from a file in EVA-CLIP's own key layout (visual.*, q_bias / v_bias,
inner_attn_ln, SwiGLU w1 / w2 / ffn_ln / w3, RoPE buffers, the text tower beside it), read with weights_only and
mapped onto timm's Eva: the same outputs as the network the weights came from. The tower here is EVA02-L's at a
small width (64, 1 head) and 20 blocks; the layout and the 336 px / 14 px patch grid (577 tokens) are the real ones."""
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.extractors.eva_clip import HIDDEN_LAYERS, load_eva_clip
from support.eva_files import eva_layout, eva_model


@pytest.fixture(scope="module")
def source():
    return eva_model(seed=3, depth=20, width=64)


def test_eva_clip_file_gives_the_source_networks_outputs(source, tmp_path):
    path = tmp_path / "EVA02_CLIP_L_336_psz14_s6B.pt"
    torch.save({"model": eva_layout(source)}, path)
    eva = load_eva_clip(str(path))
    x = torch.randn(2, 3, 336, 336, generator=torch.Generator().manual_seed(0))
    cls, hidden = eva(x)
    with torch.no_grad():
        expected = source(x)
        _, inter = source.forward_intermediates(x, indices=list(HIDDEN_LAYERS), return_prefix_tokens=True,
                                                output_fmt="NLC")
    torch.testing.assert_close(cls, expected / expected.norm(dim=-1, keepdim=True), atol=1e-5, rtol=0)
    assert len(hidden) == 5 and all(h.shape == (2, 577, 64) for h in hidden)
    for h, (tokens, prefix) in zip(hidden, inter):
        torch.testing.assert_close(h, torch.cat([prefix, tokens], 1), atol=1e-5, rtol=0)


def test_other_files_are_named(source, tmp_path):
    torch.save({"lora_unet.weight": torch.zeros(2)}, tmp_path / "lora.pt")
    with pytest.raises(InfuseError, match="no EVA-CLIP image tower"):
        load_eva_clip(str(tmp_path / "lora.pt"))
    damaged = {k: v for k, v in eva_layout(source).items() if k != "visual.blocks.3.attn.proj.weight"}
    torch.save(damaged, tmp_path / "damaged.pt")
    with pytest.raises(InfuseError, match="not EVA02-CLIP-L-14-336's image tower"):
        load_eva_clip(str(tmp_path / "damaged.pt"))
    short = {k: v for k, v in eva_layout(source).items() if not k.startswith("visual.blocks.1")}
    torch.save(short, tmp_path / "short.pt")
    with pytest.raises(InfuseError, match="the EVA-CLIP tower has 9 blocks"):
        load_eva_clip(str(tmp_path / "short.pt"))
