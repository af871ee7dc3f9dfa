"""Typed feature records that extractor nodes output and mechanism nodes consume.

They are plain dataclasses of tensors, so a node output says what it holds, and `to_tensors` /
`from_tensors` make them savable as `.safetensors` (tensors + string metadata).
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields

import torch


@dataclass
class ImageEmbeds:
    """What a CLIP image encoder says about N images (the IMAGE_EMBEDS type).

    `uncond_hidden` holds the encoder's penultimate states for a zero image in normalised pixel space: the
    unconditional input of the IP-Adapter variants that eat hidden states (plus, full-face, FaceID-Plus).
    """
    encoder: str                              # which encoder made them, e.g. "clip_vision:1280/1024"
    pooled: torch.Tensor                      # [N, D] projected image embeds
    hidden: torch.Tensor                      # [N, S, H] penultimate hidden states
    uncond_hidden: torch.Tensor               # [1, S, H]

    def __len__(self) -> int:
        return self.pooled.shape[0]

    def select(self, rows) -> "ImageEmbeds":
        return ImageEmbeds(self.encoder, self.pooled[rows], self.hidden[rows], self.uncond_hidden)

    @property
    def pooled_dim(self) -> int:
        return self.pooled.shape[-1]

    @property
    def hidden_dim(self) -> int:
        return self.hidden.shape[-1]


@dataclass
class FaceEmbeds:
    """Face-recognition embeddings of N faces (the FACE_EMBEDS type).

    `embedding` is the recogniser's raw output (InstantID, FaceID Portrait unnorm use it); `normed` is the same
    scaled to unit length (IP-Adapter FaceID, FaceID-Plus and Portrait use it, as insightface's
    `normed_embedding`)."""
    model: str                                # which recogniser made them, e.g. "antelopev2"
    embedding: torch.Tensor                   # [N, 512] raw
    normed: torch.Tensor                      # [N, 512] unit length
    bbox: torch.Tensor                        # [N, 4] x1, y1, x2, y2 in pixels of the analysed image
    kps: torch.Tensor                         # [N, 5, 2] eyes, nose, mouth corners
    det_score: torch.Tensor                   # [N]
    image_hw: torch.Tensor                    # [N, 2] height, width of the image each face was found in
    found: torch.Tensor | None = None         # [N] bool: False where the image had no face (passed through, zeros)

    def __post_init__(self):
        if self.found is None:
            self.found = torch.ones(self.embedding.shape[0], dtype=torch.bool)
        self.found = self.found.bool()

    @classmethod
    def from_raw(cls, model: str, embedding: torch.Tensor) -> "FaceEmbeds":
        """Embeddings without detection data (synthetic, or from another tool): boxes and keypoints zero."""
        n = embedding.shape[0]
        return cls(model, embedding, embedding / embedding.norm(dim=-1, keepdim=True).clamp_min(1e-12),
                   torch.zeros(n, 4), torch.zeros(n, 5, 2), torch.zeros(n), torch.zeros(n, 2))

    def __len__(self) -> int:
        return self.embedding.shape[0]

    def select(self, rows) -> "FaceEmbeds":
        return FaceEmbeds(self.model, *(getattr(self, f.name)[rows] for f in fields(self)[1:]))

    @property
    def missing(self) -> list[int]:
        """Indices of the entries whose image had no face."""
        return [i for i, ok in enumerate(self.found.tolist()) if not ok]

    def present(self) -> "FaceEmbeds | None":
        """The entries with a face (self when every image had one), or None when no image had one."""
        if not self.missing:
            return self
        return self.select(self.found) if bool(self.found.any()) else None


def to_tensors(record) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors, meta = {}, {"infuse_type": type(record).__name__}
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, torch.Tensor):
            tensors[f.name] = value.detach().contiguous().cpu()
        else:
            meta[f.name] = str(value)
    return tensors, meta


def from_tensors(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str]):
    if meta.get("infuse_type") != cls.__name__:
        raise ValueError(f"the file holds {meta.get('infuse_type', 'something else')}, not {cls.__name__}")
    kwargs = {}
    for f in fields(cls):
        if f.name in tensors:
            kwargs[f.name] = tensors[f.name]
        elif f.name in meta:
            kwargs[f.name] = meta[f.name]
        elif f.default is not MISSING:         # a field newer than the file (FaceEmbeds.found)
            kwargs[f.name] = f.default
        else:
            raise KeyError(f.name)
    return cls(**kwargs)
