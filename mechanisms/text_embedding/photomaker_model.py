"""PhotoMaker's ID encoder (TencentARC/PhotoMaker `model.py`, `model_v2.py`): a CLIP ViT-L/14 image tower on ComfyUI's
own CLIP vision classes, and the fuse module that merges each reference image's ID embedding into a class word's
text embedding. Module names follow the files' `id_encoder.*` keys, so a file loads with strict=True.

    v1: id = [visual_projection(pooled), visual_projection_2(pooled)]                    -> 1 x 2048 per image
    v2: id = t + resampler(t, last_hidden_state), t = LN(token_proj(arcface)) as 2 x 2048 -> 2 x 2048 per image
    fused row = LN(mlp2(mlp1([text_row, id_row]) + text_row))   (mlp1 without, mlp2 with a residual)
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ...core.perceiver import FacePerceiverResampler

EMBED = 2048                 # SDXL's text embedding: CLIP-L 768 + CLIP-G 1280
PROJECTIONS = (768, 1280)
ARCFACE = 512
V2_TOKENS, V2_DEPTH, V2_DIM_HEAD = 2, 4, 128


def vision_config(width: int, layers: int, heads: int) -> dict:
    """ViT-L/14 at 224 px (PhotoMaker's VISION_CONFIG_DICT, HF's defaults written out as ComfyUI needs them)."""
    return {"hidden_size": width, "intermediate_size": 4 * width, "num_attention_heads": heads,
            "num_hidden_layers": layers, "patch_size": 14, "image_size": 224, "num_channels": 3,
            "hidden_act": "quick_gelu", "model_type": "clip_vision_model", "layer_norm_eps": 1e-5}


class FuseMLP(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.layernorm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc2(nn.functional.gelu(self.fc1(self.layernorm(x))))
        return out + x if self.residual else out


class FuseModule(nn.Module):
    def __init__(self, dim: int = EMBED):
        super().__init__()
        self.mlp1 = FuseMLP(2 * dim, dim, dim, residual=False)
        self.mlp2 = FuseMLP(dim, dim, dim, residual=True)
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, text_rows: torch.Tensor, id_rows: torch.Tensor) -> torch.Tensor:
        """[R, 2048] text embedding rows of the class word, [R, 2048] ID rows -> the fused rows."""
        fused = self.mlp1(torch.cat([text_rows, id_rows.to(text_rows.dtype)], dim=-1)) + text_rows
        return self.layer_norm(self.mlp2(fused))


class QFormerPerceiver(nn.Module):
    """v2: the ArcFace embedding as 2 tokens, refined by the CLIP patch tokens (FaceID-Plus v2's resampler with
    128-wide heads), added back to themselves."""

    def __init__(self, clip_width: int, dim: int = EMBED, tokens: int = V2_TOKENS):
        super().__init__()
        self.tokens = tokens
        self.token_proj = nn.Sequential(nn.Linear(ARCFACE, ARCFACE * 4), nn.GELU(), nn.Linear(ARCFACE * 4, dim * tokens))
        self.token_norm = nn.LayerNorm(dim)
        self.perceiver_resampler = FacePerceiverResampler(clip_width, dim, dim, V2_DEPTH, max(1, dim // V2_DIM_HEAD),
                                                          V2_DIM_HEAD)

    def forward(self, arcface: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        t = self.token_norm(self.token_proj(arcface).reshape(arcface.shape[0], self.tokens, -1))
        return t + self.perceiver_resampler(t, hidden)


class PhotoMakerEncoder(nn.Module):
    """id_encoder of photomaker-v1.bin / photomaker-v2.bin. `id_rows` gives the ID rows of N images in the order
    the class word's copies take them: [N * tokens, 2048] (image-major)."""

    def __init__(self, version: str, width: int = 1024, layers: int = 24, heads: int = 16,
                 projections: tuple[int, int] = PROJECTIONS, dtype=None, device=None, operations=None):
        super().__init__()
        import comfy.clip_model
        import comfy.ops

        operations = operations or comfy.ops.manual_cast
        self.version = version
        self.tokens = V2_TOKENS if version == "v2" else 1
        self.vision_model = comfy.clip_model.CLIPVision(vision_config(width, layers, heads), dtype, device, operations)
        self.embed = sum(projections)
        self.visual_projection = operations.Linear(width, projections[0], bias=False, dtype=dtype, device=device)
        self.visual_projection_2 = operations.Linear(width, projections[1], bias=False, dtype=dtype, device=device)
        self.fuse_module = FuseModule(self.embed)
        if version == "v2":
            self.qformer_perceiver = QFormerPerceiver(width, self.embed)

    @classmethod
    def from_state_dict(cls, sd: dict, dtype=None) -> "PhotoMakerEncoder":
        """Sizes from the weights (real files: ViT-L/14, 768 + 1280); "v2" where the ArcFace perceiver is there."""
        width = sd["vision_model.embeddings.patch_embedding.weight"].shape[0]
        layers = len({k.split(".")[3] for k in sd if k.startswith("vision_model.encoder.layers.")})
        projections = (sd["visual_projection.weight"].shape[0], sd["visual_projection_2.weight"].shape[0])
        version = "v2" if any(k.startswith("qformer_perceiver.") for k in sd) else "v1"
        return cls(version, width, layers, max(1, width // 64), projections, dtype=dtype)

    def id_rows(self, pixels: torch.Tensor, arcface: torch.Tensor | None = None) -> torch.Tensor:
        """pixels: [N, 3, 224, 224] CLIP-normalised; arcface: [N, 512] raw embeddings (v2). Computed in fp32 (the
        tower's weights are cast per layer from what the file holds, as ComfyUI's own PhotoMaker does)."""
        hidden, _, pooled = self.vision_model(pixels.float())
        if self.version == "v2":
            rows = self.qformer_perceiver(arcface.float(), hidden)
        else:
            rows = torch.cat([self.visual_projection(pooled), self.visual_projection_2(pooled)], dim=-1)[:, None]
        return rows.reshape(-1, self.embed).float()
