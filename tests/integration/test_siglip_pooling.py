"""SigLIP's pooled output through the pack: the pooling head ComfyUI's loader drops, read from the file by Infuse Load
CLIP Vision and remembered for ComfyUI's own CLIP_VISION object, matches transformers' `pooler_output`.

ComfyUI detects SigLIP so400m-384 only at its real shape (width 1152, 729 positions, a layer 22) and then builds all
27 layers whatever the file holds, so the loader tests use a file with just the keys its detection reads (never run);
the pooled-output parity runs on a small SigLIP built from ComfyUI's own classes with a small config."""
import gc
import json
import weakref

import comfy.clip_vision
import folder_paths
import nodes as comfy_nodes
import pytest
import torch
from safetensors.torch import save_file
from transformers import SiglipVisionConfig, SiglipVisionModel
from transformers.models.siglip.modeling_siglip import SiglipMultiheadAttentionPoolingHead

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.extractors import siglip_pooling
from comfyui_infuse.extractors.clip_vision import ComfyClipVision, encode, preprocess
from comfyui_infuse.extractors.siglip_pooling import head_from_state_dict, head_of, remember_head
from comfyui_infuse.nodes.clip_nodes import InfuseCLIPVisionLoader

SO400M = "clip_vision:SigLIP-so400m-14-384"
SMALL = dict(hidden_size=96, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, image_size=56,
             patch_size=14, hidden_act="gelu_pytorch_tanh", vision_use_head=True)


def image(b=2, h=40, w=72, seed=0):
    return torch.rand(b, h, w, 3, generator=torch.Generator().manual_seed(seed))


def comfy_small(config, sd):
    """ComfyUI's ClipVisionModel from a small SigLIP config, with the transformers weights (its head is dropped)."""
    cv = comfy.clip_vision.ClipVisionModel(str(config))
    cv.model.float()            # ComfyUI picks fp16 for vision encoders even on CPU; compare in fp32
    missing, unexpected = cv.load_sd(dict(sd))
    assert not missing and unexpected and all(k.startswith("vision_model.head.") for k in unexpected)
    return cv


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """transformers' SiglipVisionModel with random weights, its state dict and a ComfyUI config of the same shape."""
    torch.manual_seed(0)
    hf = SiglipVisionModel(SiglipVisionConfig(**SMALL)).eval()
    # the hub files' layout (vision_model.*); transformers 5 names SiglipVisionModel's own keys without the prefix
    sd = {("" if k.startswith("vision_model.") else "vision_model.") + k: v.contiguous()
          for k, v in hf.state_dict().items()}
    config = tmp_path_factory.mktemp("siglip") / "small_siglip.json"
    config.write_text(json.dumps({**SMALL, "model_type": "siglip_vision_model", "num_channels": 3,
                                  "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return hf, sd, config


def test_pooled_output_matches_transformers_pooler_output(small):
    hf, sd, config = small
    cv = comfy_small(config, sd)
    remember_head(cv, head_from_state_dict(sd, heads=SMALL["num_attention_heads"]))
    px = preprocess(image(), 56, cv.image_mean, cv.image_std, mode="squash")
    with torch.no_grad():
        ref = hf(pixel_values=px, output_hidden_states=True)
    pooled, hidden = ComfyClipVision(cv)(px)
    assert pooled.shape == (2, 96) and hidden.shape == (2, 16, 96)
    torch.testing.assert_close(pooled, ref.pooler_output, rtol=0, atol=1e-4)
    # hidden states are ComfyUI's penultimate ones (its LayerNorms use eps 1e-5, SigLIP's 1e-6: close, not equal)
    torch.testing.assert_close(hidden, ref.hidden_states[-2], rtol=0, atol=1e-3)
    square = image(2, 56, 56)                   # already 56 px: ComfyUI's clip_preprocess does not resize
    comfy_hidden = cv.encode_image(square)["penultimate_hidden_states"]
    torch.testing.assert_close(ComfyClipVision(cv)(preprocess(square, 56, cv.image_mean, cv.image_std))[1],
                               comfy_hidden.float(), rtol=0, atol=1e-6)

    embeds = encode(ComfyClipVision(cv), image(), mode="squash")      # SigLIP's own preprocessing: mean/std 0.5
    assert embeds.encoder == "clip_vision:SigLIP-96/16"
    torch.testing.assert_close(embeds.pooled, ref.pooler_output, rtol=0, atol=1e-4)


def test_without_a_head_the_pooled_output_is_empty_and_the_name_says_why(small):
    _, sd, config = small
    embeds = encode(ComfyClipVision(comfy_small(config, sd)), image(3), mode="crop")
    assert embeds.pooled.shape == (3, 0) and embeds.hidden.shape == (3, 16, 96)
    assert embeds.encoder == "clip_vision:SigLIP-96/16, no pooling head"


# ---- the loader, at the shape ComfyUI's detection needs ----

def so400m_head():
    torch.manual_seed(1)
    config = SiglipVisionConfig(hidden_size=1152, num_attention_heads=16, intermediate_size=16)
    return SiglipMultiheadAttentionPoolingHead(config).eval()


def write_so400m(path, head=None, text_keys=False):
    """The keys ComfyUI reads to detect SigLIP so400m-384, plus the pooling head's (and google's text tower)."""
    sd = {"vision_model.embeddings.position_embedding.weight": torch.randn(729, 1152),
          "vision_model.encoder.layers.0.layer_norm1.weight": torch.ones(1152),
          "vision_model.encoder.layers.22.layer_norm1.weight": torch.ones(1152)}
    if head is not None:
        sd.update({f"vision_model.head.{k}": v.contiguous() for k, v in head.state_dict().items()})
    if text_keys:
        sd.update({"text_model.embeddings.token_embedding.weight": torch.randn(8, 1152),
                   "logit_scale": torch.ones(1), "logit_bias": torch.zeros(1)})
    if path.suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, str(path))
    return path


@pytest.fixture
def clip_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "clip_vision",
                        ([str(tmp_path)], set(folder_paths.supported_pt_extensions)))
    return tmp_path


@pytest.mark.parametrize("name, text_keys", [("sigclip_vision_patch14_384.safetensors", False),
                                             ("model.safetensors", True), ("siglip.bin", False)])
def test_loader_remembers_the_head_of_the_object_comfyui_built(clip_folder, name, text_keys):
    head = so400m_head()
    write_so400m(clip_folder / name, head, text_keys)
    cv, info = InfuseCLIPVisionLoader.execute(name).args
    assert type(cv) is comfy.clip_vision.ClipVisionModel     # ComfyUI's own object, unchanged
    assert info == "SigLIP-so400m-14-384 with pooling head (1152-d pooled output)"
    assert ComfyClipVision(cv).name == SO400M
    tokens = torch.randn(2, 64, 1152)
    with torch.no_grad():
        torch.testing.assert_close(head_of(cv)(tokens), head(tokens), rtol=0, atol=1e-4)   # 16 heads of 72


def test_a_file_without_head_and_core_loader_objects_have_no_pooled_output(clip_folder):
    write_so400m(clip_folder / "no_head.safetensors")
    cv, info = InfuseCLIPVisionLoader.execute("no_head.safetensors").args
    assert head_of(cv) is None and "without a pooling head" in info
    assert ComfyClipVision(cv).name == SO400M + ", no pooling head"

    write_so400m(clip_folder / "with_head.safetensors", so400m_head())
    (core_cv,) = comfy_nodes.CLIPVisionLoader().load_clip("with_head.safetensors")
    assert head_of(core_cv) is None and ComfyClipVision(core_cv).name == SO400M + ", no pooling head"


def test_a_file_that_is_not_clip_vision_is_refused_on_clip_name(clip_folder):
    save_file({"lora_unet_down.weight": torch.zeros(4, 4)}, str(clip_folder / "lora.safetensors"))
    with pytest.raises(InfuseError) as e:
        InfuseCLIPVisionLoader.execute("lora.safetensors")
    assert str(e.value).startswith("Infuse Load CLIP Vision, input 'clip_name': 'lora.safetensors' is not a CLIP "
                                   "vision model")


def test_the_head_goes_with_the_clip_vision_object(clip_folder):
    write_so400m(clip_folder / "gc.safetensors", so400m_head())
    out = InfuseCLIPVisionLoader.execute("gc.safetensors")
    cv = out.args[0]
    ref, before = weakref.ref(cv), len(siglip_pooling._HEADS)
    assert head_of(cv) is not None
    del cv, out
    gc.collect()
    assert ref() is None and len(siglip_pooling._HEADS) == before - 1
