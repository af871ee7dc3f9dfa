"""PhotoMaker from a node's inputs: the checks that need no image first (base model, text width, version vs face
input, trigger word), then the ID rows of the photos (once per run), the conditioning, and the file's LoRA through
ComfyUI's LoRA loader."""
from __future__ import annotations

import torch

from ...core.errors import InfuseError, check_percent_range
from ...extractors.clip_vision import as_rgb, preprocess
from ..loaders.photomaker_file import PhotoMakerModel
from ..patching.surfaces.unet import comfy_model_type, model_family
from ..text_embedding.photomaker import photomaker_conditioning
from ..text_embedding.token_replace import expand_word

CLIP_SIZE = 224


def check_inputs(model, clip, photomaker: PhotoMakerModel, images, face_embeds, text: str, trigger_word: str):
    try:
        family = model_family(model)
    except InfuseError:
        family = None
    if family != "sdxl":
        raise InfuseError(f"PhotoMaker is made for SDXL; the model is {comfy_model_type(model)}.",
                          "connect an SDXL checkpoint (its MODEL and CLIP).", input_name="model")
    expand_word(clip, clip.tokenize(text), trigger_word, copies=images.shape[0] * photomaker.encoder.tokens)
    if photomaker.version == "v1" and face_embeds is not None:
        raise InfuseError(f"'{photomaker.name}' is PhotoMaker v1, which takes no face embedding.",
                          "disconnect face_embeds, or load photomaker-v2.bin.", input_name="face_embeds")
    if photomaker.version == "v2":
        if face_embeds is None:
            raise InfuseError(f"'{photomaker.name}' is PhotoMaker v2: it needs the ArcFace embedding of each photo.",
                              "connect Infuse Face Analysis (buffalo_l or antelopev2) of the same photos to "
                              "face_embeds.", input_name="face_embeds")
        if len(face_embeds) != images.shape[0]:
            raise InfuseError(f"{images.shape[0]} photo(s) but {len(face_embeds)} face embedding(s).",
                              "connect Infuse Face Analysis of the same photos (no_face: pass_through keeps one "
                              "entry per photo).", input_name="face_embeds")
        if face_embeds.missing:
            which = ", ".join(str(i + 1) for i in face_embeds.missing)
            raise InfuseError(f"no face was found in reference image(s) {which}; PhotoMaker v2 needs a face in each.",
                              "remove those images from the batch, or use clearer photos of the face.",
                              input_name="face_embeds")


def _text_width(clip) -> int:
    probe, _ = clip.encode_from_tokens(clip.tokenize(""), return_pooled=True)
    return probe.shape[-1]


@torch.no_grad()
def id_rows(photomaker: PhotoMakerModel, images: torch.Tensor, face_embeds=None) -> torch.Tensor:
    """[N * tokens, C]: the ID rows of every photo, image-major."""
    import comfy.model_management as mm

    patcher = photomaker.patcher()
    mm.load_model_gpu(patcher)
    device = patcher.load_device
    pixels = preprocess(as_rgb(images, "images"), CLIP_SIZE).to(device)
    arcface = face_embeds.embedding.to(device) if face_embeds is not None else None
    return photomaker.encoder.id_rows(pixels, arcface).cpu()


def photomaker_on(model, clip, photomaker: PhotoMakerModel, images, text: str, trigger_word: str, start_percent: float,
                  end_percent: float, lora_strength: float, face_embeds=None):
    """(model with the file's LoRA, positive CONDITIONING)."""
    check_inputs(model, clip, photomaker, images, face_embeds, text, trigger_word)
    check_percent_range(start_percent, end_percent)
    width = _text_width(clip)
    if width != photomaker.encoder.embed:
        raise InfuseError(f"the CLIP gives {width}-wide text embeddings; '{photomaker.name}' fuses "
                          f"{photomaker.encoder.embed}-wide ones (SDXL's CLIP-L + CLIP-G).",
                          "connect the CLIP of the SDXL checkpoint.", input_name="clip")
    rows = id_rows(photomaker, images, face_embeds)
    positive = photomaker_conditioning(clip, text, trigger_word, photomaker.encoder.fuse_module, rows,
                                       start_percent, end_percent)
    patched = model
    if photomaker.lora and lora_strength != 0.0:
        import comfy.sd

        patched, _ = comfy.sd.load_lora_for_models(model, None, photomaker.lora, lora_strength, 0)
    return patched, positive
