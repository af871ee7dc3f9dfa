"""The ways a diffusers UNet reaches the loader: a folder with config.json, a sharded checkpoint, a single file
with `<name>.json` beside it, or a single file alone (config read off the weights)."""
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.mechanisms.loaders.diffusers_unet import comfy_unet_config, infer_config
from comfyui_infuse.mechanisms.loaders.tryon_models import load_garment_unet
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from support import tiny_models, tryon_files

NODE = "Infuse Load IDM-VTON"
pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return tryon_files.write_release(tmp_path_factory.mktemp("release"), seed=2)


def weights_of(model):
    return model.model.diffusion_model.state_dict()


def test_config_read_off_the_weights_matches_the_release_config_but_for_heads(release):
    config = tryon_files.diffusers_config(4, garment=True)
    inferred = infer_config(load_file(str(release["garment"])))
    ours = comfy_unet_config(dict(inferred, attention_head_dim=config["attention_head_dim"]), use_adm=False)
    assert ours == comfy_unet_config(config, use_adm=False)
    assert inferred["addition_embed_type"] == "text_time"     # the garment file keeps SDXL's add_embedding
    unet = comfy_unet_config(tryon_files.diffusers_config(13))
    assert unet["in_channels"] == 13 and unet["adm_in_channels"] == tiny_models.TINY_SDXL_ADM
    assert {k: unet[k] for k in ("transformer_depth", "transformer_depth_output", "transformer_depth_middle")} == \
           {k: tiny_models.MODELS["tiny_sdxl"][1][k] for k in ("transformer_depth", "transformer_depth_output",
                                                                "transformer_depth_middle")}


def test_sharded_and_single_file_layouts_load_the_same_weights(release, tmp_path):
    reference = weights_of(load_garment_unet(str(release["garment"])))
    sd = load_file(str(release["garment"]))
    keys = sorted(sd)
    shards = tmp_path / "sharded"
    shards.mkdir()
    shutil.copy(release["garment"].parent / "config.json", shards / "config.json")
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:]), start=1):
        save_file({k: sd[k] for k in part}, str(shards / f"diffusion_pytorch_model-0000{i}-of-00002.safetensors"))
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(release["garment"], single / "idm_garment.safetensors")
    shutil.copy(release["garment"].parent / "config.json", single / "idm_garment.json")
    for path in (shards / "diffusion_pytorch_model-00002-of-00002.safetensors", single / "idm_garment.safetensors"):
        loaded = weights_of(load_garment_unet(str(path)))
        assert loaded.keys() == reference.keys() and all(torch.equal(loaded[k], reference[k]) for k in reference)

    (shards / "diffusion_pytorch_model-00001-of-00002.safetensors").unlink()
    with pytest.raises(InfuseError, match="one of 2 shards but 1 are in its folder"):
        load_garment_unet(str(shards / "diffusion_pytorch_model-00002-of-00002.safetensors"))


def test_a_lone_file_is_read_with_sdxl_heads_and_bad_files_are_named(release, tmp_path):
    alone = tmp_path / "garment.safetensors"
    shutil.copy(release["garment"], alone)
    # heads are not in the weights: SDXL's 64 channels per head is assumed (the tiny file has 8, so only the
    # head count differs from the original; the weights are the same)
    model = load_garment_unet(str(alone))
    sites = model_sites(model)
    assert {s.heads for s in sites} == {1, 2} and all(s.inner_dim == 64 * s.heads for s in sites)
    reference, loaded = weights_of(load_garment_unet(str(release["garment"]))), weights_of(model)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    ckpt = tiny_models.write_checkpoint(tmp_path / "tiny_sdxl.safetensors", "tiny_sdxl")
    with pytest.raises(InfuseError, match="not a diffusers-format UNet \\(it is in ComfyUI's checkpoint layout\\)"):
        load_garment_unet(str(ckpt))
    broken = tmp_path / "broken" / "diffusion_pytorch_model.safetensors"
    broken.parent.mkdir()
    shutil.copy(release["garment"].parent / "config.json", broken.parent / "config.json")
    sd = load_file(str(release["garment"]))
    save_file({k: v for k, v in sd.items() if "up_blocks.0" not in k}, str(broken))
    with pytest.raises(InfuseError, match="the UNet file lacks .* weights its config implies"):
        load_garment_unet(str(broken))
