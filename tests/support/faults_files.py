"""Bad files for the fault tests: damaged or dangerous weight files, embeds files of the wrong kind, images a
user might pick by mistake. Each writer makes one file and returns its path."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file


class OpensFile:
    """Unpickling this calls open(marker, "w"): a stand-in for any pickle that runs code when loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def code_running_torch_file(path: Path, marker: Path) -> Path:
    """A torch.save zip file shaped like an IP-Adapter .bin whose image_proj unpickles to a call."""
    torch.save({"image_proj": OpensFile(marker), "ip_adapter": {"1.to_k_ip.weight": torch.zeros(2, 2)}}, path)
    return path


def code_running_pickle(path: Path, marker: Path) -> Path:
    """A bare pickle (not torch's zip format) that runs code when loaded."""
    path.write_bytes(pickle.dumps({"image_proj": OpensFile(marker)}))
    return path


def truncated_copy(source: Path, path: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


def tensor_only_file(path: Path) -> Path:
    """A .bin holding one tensor instead of a dict of weights."""
    torch.save(torch.zeros(4, 4), path)
    return path


def plain_tensors(path: Path) -> Path:
    """A .safetensors of tensors without the pack's metadata."""
    save_file({"weight": torch.zeros(2, 3)}, str(path))
    return path


def embeds_file(path: Path, record) -> Path:
    """An IMAGE_EMBEDS / FACE_EMBEDS record saved as Infuse Save Embeds saves it."""
    from comfyui_infuse.core.records import to_tensors

    tensors, meta = to_tensors(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def image_embeds(n: int = 1, pooled: int = 1024, hidden: int = 1280, encoder: str = "clip_vision:ViT-H-14"):
    from comfyui_infuse.core.records import ImageEmbeds

    g = torch.Generator().manual_seed(n)
    return ImageEmbeds(encoder, torch.randn(n, pooled, generator=g), torch.randn(n, 257, hidden, generator=g),
                       torch.randn(1, 257, hidden, generator=g))


def face_embeds(n: int = 1):
    """Face embeddings without detection data (as from another tool): no boxes, no keypoints."""
    from comfyui_infuse.core.records import FaceEmbeds

    return FaceEmbeds.from_raw("antelopev2", torch.randn(n, 512, generator=torch.Generator().manual_seed(n)))


def png(path: Path, mode: str, size: tuple[int, int] = (64, 64), seed: int = 0) -> Path:
    """A PNG in a PIL mode: "L" (grayscale), "RGBA" (half transparent), "RGB"."""
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    if mode == "RGBA":
        pixels[:, : size[0] // 2, 3] = 0
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    return path


def open_clip_vit_b32(path: Path, seed: int = 0) -> Path:
    """A ViT-B-32 open-clip image tower with random weights (open-clip's own init): a real architecture the server
    can build without registering anything, ~0.2 s per image on a CPU where a ViT-H takes ~20 s."""
    import open_clip
    from open_clip.model import _build_vision_tower

    torch.manual_seed(seed)
    cfg = open_clip.get_model_config("ViT-B-32")
    visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=cfg.get("quick_gelu", False))
    save_file({f"visual.{k}": v.half().contiguous() for k, v in visual.state_dict().items()}, str(path))
    return path
