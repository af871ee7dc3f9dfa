"""CLIP image encoders -> ImageEmbeds (pooled embeds, penultimate hidden states, the zero image's states).

Two sources: ComfyUI's own CLIP_VISION objects (CLIP, or SigLIP with the pooling head from siglip_pooling.py) and
open-clip image towers built from an architecture name and a local weights file. Preprocessing is CLIP's: shortest
side to the model's size with bicubic resampling, centre crop, the encoder's own mean/std (CLIP's; 0.5 for SigLIP);
`pad` and `squash` keep the whole image instead (`squash` is SigLIP's own preprocessing: straight to 384x384).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..core.errors import InfuseError
from ..core.managed import managed
from ..core.records import ImageEmbeds
from .deps import require
from .siglip_pooling import head_of, read_head, remember_head

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CROP_MODES = ("crop", "pad", "squash")
MAX_SIDE = 8192

# (hidden width, embed width) of ComfyUI's CLIP vision configs -> the name users know them by; SigLIP has no
# projection: ("siglip", hidden width, tokens)
KNOWN_ENCODERS = {(1280, 1024): "ViT-H-14", (1664, 1280): "ViT-bigG-14", (1024, 768): "ViT-L-14",
                  ("siglip", 1152, 729): "SigLIP-so400m-14-384", ("siglip", 1152, 1024): "SigLIP-so400m-16-512"}
NO_HEAD = ", no pooling head"


def as_rgb(images: torch.Tensor, input_name: str = "image") -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, C] with 1, 3 or 4 channels -> [B, H, W, 3]; bad batches are errors."""
    if not isinstance(images, torch.Tensor):   # ComfyUI lets an API workflow give a value where a link belongs
        raise InfuseError(f"got the value {images!r:.60} where an IMAGE is expected.",
                          "connect the input to a node that outputs images; in an API workflow write a link "
                          "[node_id, output_index], e.g. to a LoadImage node, instead of a file name.",
                          input_name=input_name)
    if images.ndim != 4 or images.shape[0] == 0:
        raise InfuseError(f"the image batch has shape {tuple(images.shape)}; it must hold at least one image.",
                          "connect a Load Image node (or a batch with images in it).", input_name=input_name)
    h, w, c = images.shape[1:]
    if c not in (1, 3, 4):
        raise InfuseError(f"images with {c} channels are not supported.",
                          "convert the image to RGB first.", input_name=input_name)
    if max(h, w) > MAX_SIDE:
        raise InfuseError(f"the image is {w}x{h}; sides above {MAX_SIDE} pixels are refused "
                          "(the encoders see a few hundred pixels anyway).",
                          "downscale it first (Upscale Image By 0.25, say).", input_name=input_name)
    if c == 1:
        return images.expand(-1, -1, -1, 3)
    return images[..., :3]   # RGBA: alpha dropped, as ComfyUI's own CLIP preprocessing does


def preprocess(images: torch.Tensor, size: int, mean=OPENAI_MEAN, std=OPENAI_STD, mode: str = "crop") -> torch.Tensor:
    """[B, H, W, 3] in 0..1 -> normalised [B, 3, size, size], exactly as ComfyUI's clip_preprocess for crop /
    squash (bicubic with antialias, 8-bit rounding, CLIP mean/std); pad first pads to a square with black."""
    x = images.movedim(-1, 1).float()
    if mode == "pad":
        h, w = x.shape[-2:]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        x = F.pad(x, (left, side - w - left, top, side - h - top), value=0.0)
    if x.shape[-2:] != (size, size):
        if mode == "squash":
            target = (size, size)
        else:
            scale = size / min(x.shape[-2:])
            target = (round(scale * x.shape[-2]), round(scale * x.shape[-1]))
        x = F.interpolate(x, size=target, mode="bicubic", antialias=True)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[:, :, top:top + size, left:left + size]
    x = torch.clip(255.0 * x, 0, 255).round() / 255.0
    mean = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def is_siglip(clip_vision) -> bool:
    """A ComfyUI CLIP_VISION built from a SigLIP config: post-LN tokens out, no class token, no projection."""
    vision = getattr(clip_vision.model, "vision_model", None)
    return vision is not None and (getattr(vision, "output_layernorm", False) is True
                                   or getattr(vision.embeddings, "class_embedding", 0) is None)


class ComfyClipVision:
    """Adapter over ComfyUI's ClipVisionModel (the CLIP_VISION type). A SigLIP's pooled output comes from the pooling
    head remembered for the object (Infuse Load CLIP Vision); without one it is [B, 0] and the name says why."""

    def __init__(self, clip_vision):
        self.cv = clip_vision
        self.size = clip_vision.image_size
        self.mean, self.std = clip_vision.image_mean, clip_vision.image_std
        vision = getattr(clip_vision.model, "vision_model", None)
        if vision is None:
            raise InfuseError(f"the CLIP vision model is a {type(clip_vision.model).__name__}, not a CLIP or SigLIP "
                              "image encoder.", "load a CLIP ViT-H / ViT-bigG / ViT-L or SigLIP file instead.",
                              input_name="clip_vision")
        hidden = vision.embeddings.patch_embedding.out_channels
        self.siglip = is_siglip(clip_vision)
        self.head = head_of(clip_vision) if self.siglip else None
        if self.siglip:
            tokens = vision.embeddings.position_embedding.weight.shape[0]
            name = KNOWN_ENCODERS.get(("siglip", hidden, tokens), f"SigLIP-{hidden}/{tokens}")
            self.name = "clip_vision:" + name + ("" if self.head is not None else NO_HEAD)
        else:
            embed = clip_vision.model.visual_projection.out_features
            self.name = "clip_vision:" + KNOWN_ENCODERS.get((hidden, embed), f"{hidden}/{embed}")

    @property
    def pooled_dim(self) -> int:
        """The width of the pooled output, known before encoding (0: a SigLIP without its pooling head)."""
        if not self.siglip:
            return self.cv.model.visual_projection.out_features
        return self.head.width if self.head is not None else 0

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import comfy.model_management as mm

        mm.load_model_gpu(self.cv.patcher)
        out = self.cv.model(pixel_values=pixels.to(self.cv.load_device), intermediate_output=-2)
        hidden = out[1].float().cpu()
        if not self.siglip:
            return out[2].float().cpu(), hidden
        tokens = out[0].float().cpu()          # the head is small: run in fp32 on the CPU, where it lives
        pooled = self.head(tokens) if self.head is not None else tokens.new_zeros(tokens.shape[0], 0)
        return pooled, hidden


def describe(clip_vision) -> str:
    """What a CLIP_VISION object is, in words, for the loader's info output."""
    try:
        enc = ComfyClipVision(clip_vision)
    except InfuseError:
        return f"{type(clip_vision.model).__name__}: not a CLIP or SigLIP encoder, so no Infuse encoder node can use it"
    name = enc.name.split(":", 1)[1]
    if not enc.siglip:
        return f"CLIP {name} ({enc.cv.model.visual_projection.out_features}-d pooled output)"
    if enc.head is not None:
        return f"{name} with pooling head ({enc.head.width}-d pooled output)"
    return (f"{name[:-len(NO_HEAD)]} without a pooling head: no pooled output (the file has no vision_model.head.* "
            "weights); adapters that need it, such as the InstantX FLUX IP-Adapter, will refuse it")


def load_comfy_clip_vision(path: str, input_name: str = "clip_name"):
    """ComfyUI's own CLIP vision loader (the core CLIPVisionLoader's); a SigLIP's pooling head, which it drops, is read
    from the file and remembered for the object it returns."""
    import comfy.clip_vision

    name = os.path.basename(path)
    fix = ("choose a CLIP vision file from models/clip_vision: e.g. CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors, "
           "or sigclip_vision_patch14_384.safetensors / google's siglip-so400m-patch14-384 model.safetensors.")
    try:
        clip_vision = comfy.clip_vision.load(path)
    except Exception as e:      # ComfyUI's loader raises many types on files it half-recognises
        raise InfuseError(f"'{name}' could not be loaded as a CLIP vision model ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}).", fix, input_name=input_name) from e
    if clip_vision is None:
        raise InfuseError(f"'{name}' is not a CLIP vision model: ComfyUI knows none of its weights' layouts "
                          "(CLIP ViT-L / H / bigG, SigLIP, DINOv2).", fix, input_name=input_name)
    if is_siglip(clip_vision):
        head = read_head(path, input_name)
        width = clip_vision.model.vision_model.embeddings.patch_embedding.out_channels
        if head is not None and head.width != width:
            raise InfuseError(f"'{name}' has a {head.width}-wide pooling head on a {width}-wide SigLIP.",
                              "use an unmodified SigLIP file.", input_name=input_name)
        if head is not None:
            remember_head(clip_vision, head)
    return clip_vision


class OpenClipVision:
    """An open-clip image tower (`model.visual`) under ComfyUI's model management (the INFUSE_CLIP_VISION type)."""

    def __init__(self, arch: str, visual: torch.nn.Module):
        self.arch = arch
        self.name = f"open_clip:{arch}"
        self.visual = visual.eval().requires_grad_(False)
        size = visual.image_size
        self.size = size[0] if isinstance(size, (tuple, list)) else size
        self.mean = getattr(visual, "image_mean", None) or OPENAI_MEAN
        self.std = getattr(visual, "image_std", None) or OPENAI_STD
        self.patcher = managed(visual)

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import comfy.model_management as mm

        mm.load_model_gpu(self.patcher)
        p = next(self.visual.parameters())
        n_blocks = len(self.visual.transformer.resblocks)
        out = self.visual.forward_intermediates(pixels.to(p.device, p.dtype), indices=[n_blocks - 2],
                                                output_fmt="NLC", output_extra_tokens=True)
        hidden = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)
        return out["image_features"].float().cpu(), hidden.float().cpu()


def load_open_clip(arch: str, path: str) -> OpenClipVision:
    """Build `arch` with open-clip (no download) and load the image tower from a local weights file."""
    from ..core.files import load_weights

    open_clip = require("open_clip")
    if arch not in open_clip.list_models():
        raise InfuseError(f"open-clip has no architecture '{arch}'.",
                          "use one of: ViT-H-14, ViT-bigG-14, ViT-L-14, EVA02-L-14-336 (open_clip.list_models()).",
                          input_name="architecture")
    sd = load_weights(path, "clip_name")
    visual_sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")} or sd
    visual = _build_visual(open_clip, arch)
    try:
        visual.load_state_dict(visual_sd, strict=True)
    except RuntimeError as e:
        raise InfuseError(f"the weights file does not hold a {arch} image tower "
                          f"({str(e).splitlines()[0]}...).",
                          "choose the architecture the file was trained as, or another file.",
                          input_name="clip_name") from e
    return OpenClipVision(arch, visual)


def _build_visual(open_clip, arch: str) -> torch.nn.Module:
    """Only the image tower where open-clip can build it alone (ViT-H's text tower is another 350M weights)."""
    config = open_clip.get_model_config(arch) or {}
    vision_cfg = config.get("vision_cfg", {})
    if vision_cfg and not vision_cfg.get("timm_model_name"):
        try:
            from open_clip.model import _build_vision_tower
        except ImportError:   # a future open-clip without it: build the whole model instead
            pass
        else:
            return _build_vision_tower(config["embed_dim"], vision_cfg, quick_gelu=config.get("quick_gelu", False))
    return open_clip.create_model(arch, pretrained=None, device="cpu").visual


def encode(encoder, images: torch.Tensor, mode: str = "crop", input_name: str = "image") -> ImageEmbeds:
    """Encode a batch of images, one at a time (ComfyUI's progress bar follows), plus the zero image."""
    import comfy.utils

    if mode not in CROP_MODES:
        raise InfuseError(f"crop mode must be one of {CROP_MODES}, got '{mode}'.",
                          "pick crop, pad or squash.", input_name="crop")
    images = as_rgb(images, input_name)
    pooled, hidden = [], []
    bar = comfy.utils.ProgressBar(images.shape[0])
    for image in images:
        p, h = encoder(preprocess(image[None], encoder.size, encoder.mean, encoder.std, mode))
        pooled.append(p)
        hidden.append(h)
        bar.update(1)
    # the unconditional input of the hidden-state variants: a zero image in normalised pixel space
    _, uncond = encoder(torch.zeros(1, 3, encoder.size, encoder.size))
    return ImageEmbeds(encoder.name, torch.cat(pooled), torch.cat(hidden), uncond)


def one_encoder(clip_vision, open_clip):
    """The one encoder connected to a node (ComfyUI CLIP_VISION or an open-clip tower)."""
    if clip_vision is not None and open_clip is not None:
        raise InfuseError("both a CLIP vision model and an open-clip model are connected.",
                          "connect only one of them.", input_name="clip_vision")
    if clip_vision is not None:
        return ComfyClipVision(clip_vision)
    if open_clip is not None:
        return open_clip
    raise InfuseError("no CLIP image encoder is connected.",
                      "connect Load CLIP Vision (or Infuse Load open-clip Vision) to clip_vision.",
                      input_name="clip_vision")
