"""Face parsing for PuLID: the BiSeNet of facexlib (`parsing_bisenet.pth`, CelebAMask-HQ's 19 classes) and the
"face features image" PuLID feeds EVA-CLIP: the aligned face in grey, white wherever the parser sees background,
neck, clothes, ears, earrings or hat.

The network is restated from facexlib/parsing/{bisenet,resnet}.py (xinntao/facexlib): a ResNet18 context path (its
1/8 feature stands in for the spatial path), attention refinement on the 1/16 and 1/32 features plus a global-average
branch, a feature fusion module, and three output heads upsampled bilinearly (align_corners=True) to the input size;
the main head's logits come first. Module and parameter names are the file's, so it loads with strict=True.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import InfuseError
from ..core.files import load_weights
from ..core.managed import managed

NUM_CLASS = 19
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BG_LABELS = (0, 16, 18, 7, 8, 9, 14, 15)    # background, cloth, hat, left / right ear, earring, neck, neck lace
GRAY = (0.299, 0.587, 0.114)
FIX = "choose parsing_bisenet.pth (facexlib's face parser, github.com/xinntao/facexlib releases v0.2.0)."


def _global_pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, x.shape[2:])


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _stage(64, 64, 1)
        self.layer2 = _stage(64, 128, 2)
        self.layer3 = _stage(128, 256, 2)
        self.layer4 = _stage(256, 512, 2)

    def forward(self, x):
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)           # 1/8, 1/16, 1/32


class AttentionRefinementModule(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(_global_pool(feat))))


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x):
        feat8, feat16, feat32 = self.resnet(x)
        avg = F.interpolate(self.conv_avg(_global_pool(feat32)), feat32.shape[2:], mode="nearest")
        up32 = F.interpolate(self.arm32(feat32) + avg, feat16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, feat8.shape[2:], mode="nearest")
        return feat8, self.conv_head16(up16), up32             # 1/8 (res3b1), 1/8, 1/16


class FeatureFusionModule(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, fsp, fcp):
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_pool(feat)))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, cin: int, mid: int, num_class: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, num_class, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """forward(x [B, 3, H, W], ImageNet-normalised RGB) -> (logits, logits16, logits32), each [B, classes, H, W]."""

    def __init__(self, num_class: int = NUM_CLASS):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, num_class)
        self.conv_out16 = BiSeNetOutput(128, 64, num_class)
        self.conv_out32 = BiSeNetOutput(128, 64, num_class)

    def forward(self, x):
        size = x.shape[2:]
        feat8, cp8, cp16 = self.cp(x)
        heads = (self.conv_out(self.ffm(feat8, cp8)), self.conv_out16(cp8), self.conv_out32(cp16))
        return tuple(F.interpolate(h, size, mode="bilinear", align_corners=True) for h in heads)


class FaceParser:
    """A loaded BiSeNet on ComfyUI's devices, run in fp32 (as facexlib runs it for PuLID)."""

    def __init__(self, model: BiSeNet):
        self.model = model.float().eval().requires_grad_(False)
        self.patcher = managed(self.model)

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: [B, 3, H, W], normalised with MEAN / STD. The main head's logits [B, 19, H, W], float32 on the
        device `pixels` came on."""
        import comfy.model_management as mm

        mm.load_model_gpu(self.patcher)
        device = next(self.model.parameters()).device
        return self.model(pixels.to(device, torch.float32))[0].to(pixels.device)


def _unwrap(sd: dict) -> dict:
    """facexlib's init_parsing_model loads the file as a plain state dict; wrappers and DataParallel's 'module.'
    prefix, as other face tools save, are accepted too."""
    for key in ("params_ema", "params", "state_dict"):
        if isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def load_face_parser(path: str, input_name: str = "face_parser") -> FaceParser:
    name = os.path.basename(path)
    sd = _unwrap(load_weights(path, input_name))
    if "cp.resnet.conv1.weight" not in sd or "conv_out.conv_out.weight" not in sd:
        raise InfuseError(f"'{name}' is not a BiSeNet face-parsing model (no cp.resnet.* / conv_out.* weights).",
                          FIX, input_name=input_name)
    classes = sd["conv_out.conv_out.weight"].shape[0]
    if classes != NUM_CLASS:
        raise InfuseError(f"'{name}' parses {classes} classes; PuLID reads CelebAMask-HQ's {NUM_CLASS} face classes.",
                          FIX, input_name=input_name)
    model = BiSeNet(NUM_CLASS)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise InfuseError(f"'{name}' is a damaged or different BiSeNet ({str(e).splitlines()[0]} ...).",
                          "download parsing_bisenet.pth again (facexlib releases v0.2.0) and compare its size "
                          "with the original.", input_name=input_name) from e
    return FaceParser(model)


def _channels_first(images: torch.Tensor, input_name: str) -> torch.Tensor:
    if images.ndim == 4 and images.shape[-1] == 3:          # ComfyUI's IMAGE layout [B, H, W, 3]
        return images.permute(0, 3, 1, 2)
    if images.ndim == 4 and images.shape[1] == 3:
        return images
    raise InfuseError(f"the face image has shape {list(images.shape)}; it needs [B, H, W, 3] or [B, 3, H, W] RGB.",
                      "pass an RGB image batch (an aligned face crop).", input_name=input_name)


def _labels(x: torch.Tensor, parser) -> torch.Tensor:
    mean = x.new_tensor(MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(STD).view(1, 3, 1, 1)
    logits = parser((x - mean) / std)
    if isinstance(logits, (tuple, list)):                   # a bare BiSeNet: the main head comes first
        logits = logits[0]
    return logits.argmax(dim=1, keepdim=True).to(x.device)


def face_labels(aligned_rgb: torch.Tensor, parser, input_name: str = "image") -> torch.Tensor:
    """The parser's label per pixel, [B, 1, H, W] (int64), of aligned RGB faces in 0..1."""
    return _labels(_channels_first(aligned_rgb, input_name).float(), parser)


def face_features_image(aligned_rgb: torch.Tensor, parser, input_name: str = "image") -> torch.Tensor:
    """PuLID's EVA-CLIP input: aligned faces ([B, H, W, 3] or [B, 3, H, W], RGB in 0..1; facexlib aligns to 512)
    in grey (0.299 R + 0.587 G + 0.114 B on all three channels), white where the parser's label is one of
    BG_LABELS. `parser`: a FaceParser, or any callable from MEAN / STD-normalised pixels to [B, classes, H, W]
    logits (or a tuple of them, main head first). Returns [B, 3, H, W] float32 on the input's device."""
    x = _channels_first(aligned_rgb, input_name).float()
    labels = _labels(x, parser)
    bg = torch.zeros_like(labels, dtype=torch.bool)
    for label in BG_LABELS:
        bg |= labels == label
    r, g, b = GRAY
    gray = (r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]).repeat(1, 3, 1, 1)
    return torch.where(bg, torch.ones_like(x), gray)
