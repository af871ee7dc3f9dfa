"""PhotoMaker files read into a PhotoMakerModel, the version recognised from the keys (TencentARC/PhotoMaker's
load_photomaker_adapter): `.bin` = {"id_encoder": state dict, "lora_weights": state dict}; `.safetensors` = the same
flat, under `id_encoder.` / `lora_weights.`. v2 (photomaker-v2.bin) adds `id_encoder.qformer_perceiver.*`. The LoRA
is kept in the file's own keys (old diffusers attention-processor names), which ComfyUI's LoRA loader maps."""
from __future__ import annotations

import os
from dataclasses import dataclass


from ...core.errors import InfuseError
from ...core.files import load_weights
from ...core.managed import managed
from ..text_embedding.photomaker_model import PhotoMakerEncoder

VISION_KEY = "vision_model.embeddings.patch_embedding.weight"
FUSE_KEY = "fuse_module.layer_norm.weight"
NOT_SAVED = ("vision_model.embeddings.position_ids",)       # a buffer older transformers versions saved


@dataclass(eq=False)
class PhotoMakerModel:
    name: str
    encoder: PhotoMakerEncoder
    lora: dict

    def patcher(self):
        """The encoder under ComfyUI's model management (moved to the GPU for the encode, offloaded after)."""
        if getattr(self, "_patcher", None) is None:
            self._patcher = managed(self.encoder)
        return self._patcher

    @property
    def version(self) -> str:
        return self.encoder.version

    def describe(self) -> str:
        enc = self.encoder
        per = "1 token" if enc.tokens == 1 else f"{enc.tokens} tokens"
        inputs = "CLIP of each photo + its ArcFace embedding" if enc.version == "v2" else "CLIP of each photo"
        lora = f"LoRA on {len({k.rsplit('.processor', 1)[0] for k in self.lora})} attentions" if self.lora \
            else "no LoRA"
        return f"PhotoMaker {enc.version} ({inputs}; {per} of {enc.embed} per photo; {lora})"


def _parts(data: dict) -> tuple[dict, dict]:
    if isinstance(data.get("id_encoder"), dict):
        return dict(data["id_encoder"]), dict(data.get("lora_weights") or {})
    split = lambda prefix: {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
    return split("id_encoder."), split("lora_weights.")


def parse_photomaker(data: dict, name: str, input_name: str = "photomaker_file") -> PhotoMakerModel:
    encoder_sd, lora = _parts(data)
    if VISION_KEY not in encoder_sd or FUSE_KEY not in encoder_sd:
        raise InfuseError(f"'{name}' is not a PhotoMaker file (no id_encoder with a CLIP tower and a fuse module).",
                          "choose photomaker-v1.bin (TencentARC/PhotoMaker) or photomaker-v2.bin "
                          "(TencentARC/PhotoMaker-V2) from models/photomaker.", input_name=input_name)
    encoder_sd = {k: v for k, v in encoder_sd.items() if k not in NOT_SAVED}
    encoder = PhotoMakerEncoder.from_state_dict(encoder_sd)
    try:
        encoder.load_state_dict(encoder_sd, strict=True)
    except RuntimeError as e:
        raise InfuseError(f"'{name}' has a PhotoMaker {encoder.version} ID encoder this pack cannot load "
                          f"({str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}).",
                          "use the file as published (photomaker-v1.bin / photomaker-v2.bin).",
                          input_name=input_name) from e
    return PhotoMakerModel(name, encoder.eval().requires_grad_(False), lora)


def load_photomaker(path: str, input_name: str = "photomaker_file") -> PhotoMakerModel:
    return parse_photomaker(load_weights(path, input_name), os.path.basename(path), input_name)


