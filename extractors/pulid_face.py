"""PuLID's ID features of a face (ToTheBeginning/PuLID pulid/pipeline*.py, get_id_embedding):

    id_cond       = [ArcFace embedding (raw, 512), EVA-CLIP's projected CLS token, L2-normalised (768)]   [N, 1280]
    id_vit_hidden = EVA-CLIP's residual stream entering blocks 4, 8, 12, 16, 20                     5 x [N, 577, 1024]

EVA-CLIP sees the face aligned to FFHQ's 5-point template at 512 px (facexlib's FaceRestoreHelper; grey border
135 / 133 / 132), its background, ears, neck, clothes and hat white and the rest grey (BiSeNet face parsing), resized
to 336 px (bicubic) and normalised with CLIP's mean / std. The 5 points are insightface's (Infuse Face Analysis), as
the maintained ComfyUI ports take them; the reference detects them again with RetinaFace.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.records import FaceEmbeds
from .eva_clip import MEAN, SIZE, STD
from .face_parsing import face_features_image
from .keypoints import similarity

FFHQ_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935], [201.26117, 371.41043],
                     [313.08905, 371.15118]], dtype=np.float32)
BORDER = (135 / 255, 133 / 255, 132 / 255)
ALIGNED = 512


def ffhq_aligned(images: torch.Tensor, kps: torch.Tensor, size: int = ALIGNED) -> torch.Tensor:
    """Faces warped onto FFHQ's template: IMAGE [N, H, W, 3] + keypoints [N, 5, 2] -> [N, 3, size, size]."""
    from kornia.geometry.transform import warp_affine

    template = torch.from_numpy(FFHQ_512 * (size / 512.0))
    mats = torch.stack([similarity(k.float(), template) for k in kps]).float()
    fill = torch.tensor(BORDER)
    return warp_affine(images.movedim(-1, 1).float(), mats, dsize=(size, size), mode="bilinear",
                       padding_mode="fill", fill_value=fill, align_corners=True).clamp(0, 1)


def eva_pixels(features_image: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(features_image, size=(SIZE, SIZE), mode="bicubic", align_corners=False, antialias=True)
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    return (x - mean) / std


@torch.no_grad()
def id_features(images: torch.Tensor, faces: FaceEmbeds, eva, parser) -> tuple[torch.Tensor, list[torch.Tensor],
                                                                                   torch.Tensor]:
    """(id_cond [N, 1280], id_vit_hidden 5 x [N, 577, 1024], the face-features images EVA saw [N, 512, 512, 3]) of
    one face per image; `images` and `faces` row for row (faces found only)."""
    aligned = ffhq_aligned(images, faces.kps)
    features = face_features_image(aligned, parser)
    cls, hidden = eva(eva_pixels(features))
    id_cond = torch.cat([faces.embedding.float(), cls.float()], dim=-1)
    return id_cond, hidden, features.movedim(1, -1)
