"""Every published variant, written in the published formats and read back through the file loader."""
import pytest

from comfyui_infuse.mechanisms.loaders.ipadapter_file import load_ipadapter
from support import ipadapter_files as f

# (variant, image_proj builder kwargs, LoRA?, expected input, expected tokens) at real SD1.5 sizes
SD15 = [
    ("base", dict(kind="linear"), False, "pooled", 4),                         # ip-adapter_sd15 / _light
    ("base", dict(kind="linear", clip_pooled=1280), False, "pooled", 4),       # ip-adapter_sd15_vit-G
    ("plus", dict(kind="resampler"), False, "hidden", 16),                     # plus / plus-face
    ("full_face", dict(kind="mlp"), False, "hidden", 257),
    ("faceid", dict(kind="faceid"), True, "face", 4),
    ("faceid_plus", dict(kind="faceid_plus"), True, "face+hidden", 4),         # plus and plus v2
    ("faceid_portrait", dict(kind="faceid", tokens=16), False, "face", 16),
]
# SDXL at the published image-side sizes, token width kept small (2048-wide layers would be 1.4 GB)
SDXL = [
    ("base", dict(kind="linear", clip_pooled=1280), False, "pooled", 4),       # ip-adapter_sdxl (bigG)
    ("base", dict(kind="linear", clip_pooled=1024), False, "pooled", 4),       # ip-adapter_sdxl_vit-h
    ("plus", dict(kind="resampler", resampler_dim=1280), False, "hidden", 16), # plus(-face)_sdxl_vit-h
    ("faceid", dict(kind="faceid"), True, "face", 4),
    ("faceid_plus", dict(kind="faceid_plus"), True, "face+hidden", 4),         # faceid-plusv2_sdxl
    ("faceid_portrait", dict(kind="faceid", tokens=16), False, "face", 16),
    ("faceid_portrait_unnorm", dict(kind="resampler", clip_hidden=512, resampler_dim=1280), False, "face_raw", 16),
]


def cases():
    for family, widths, table, cross in (("sd15", f.SD15_SITE_WIDTHS, SD15, 768),
                                         ("sdxl", [w // 8 for w in f.SDXL_SITE_WIDTHS], SDXL, 128)):
        for variant, proj, lora, image_input, tokens in table:
            for suffix in (".safetensors", ".bin"):
                yield pytest.param(family, widths, cross, variant, proj, lora, image_input, tokens, suffix,
                                   id=f"{family}-{variant}-{proj.get('clip_pooled', '')}{suffix}")


@pytest.mark.parametrize("family, widths, cross, variant, proj, lora, image_input, tokens, suffix", list(cases()))
def test_variant_is_read_from_the_weights(tmp_path, family, widths, cross, variant, proj, lora, image_input, tokens,
                                          suffix):
    proj = dict(proj)
    path = f.write(tmp_path / f"renamed_on_purpose{suffix}", f.image_proj(proj.pop("kind"), cross=cross, **proj),
                   f.ip_layers(widths, cross, lora_rank=8 if lora else None))
    adapter = load_ipadapter(str(path))
    assert (adapter.family, adapter.variant, adapter.image_input, adapter.tokens) == (family, variant, image_input,
                                                                                     tokens)
    assert adapter.cross_dim == cross and len(adapter.kv) == len(widths) and bool(adapter.lora) == lora
    assert [adapter.kv[n][0].shape[0] for n in range(len(widths))] == widths
