"""Random BiSeNet face-parser weights in the key layout of facexlib's `parsing_bisenet.pth` (xinntao/facexlib,
facexlib/parsing/{bisenet,resnet}.py: BiSeNet(num_class=19)), written as facexlib publishes it: torch.save of the
plain state dict. The layout is listed here from facexlib's source, not taken from the pack's module, so a loader
that disagrees with the file fails. Weights are fan-in scaled so activations stay near unit scale."""
from __future__ import annotations

import math

import torch


def _conv(sd: dict, name: str, cout: int, cin: int, k: int) -> None:
    sd[f"{name}.weight"] = (cout, cin, k, k)


def _bn(sd: dict, name: str, c: int) -> None:
    for key in ("weight", "bias", "running_mean", "running_var"):
        sd[f"{name}.{key}"] = (c,)
    sd[f"{name}.num_batches_tracked"] = ()


def _conv_bn_relu(sd: dict, name: str, cin: int, cout: int, k: int = 3) -> None:
    _conv(sd, f"{name}.conv", cout, cin, k)
    _bn(sd, f"{name}.bn", cout)


def layout(num_class: int = 19) -> dict[str, tuple]:
    """Key -> shape of facexlib's BiSeNet(num_class), in its state_dict order."""
    sd: dict[str, tuple] = {}
    r = "cp.resnet"
    _conv(sd, f"{r}.conv1", 64, 3, 7)
    _bn(sd, f"{r}.bn1", 64)
    for i, (cin, cout, stride) in enumerate([(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)], 1):
        for j in range(2):
            b, bin_ = f"{r}.layer{i}.{j}", cin if j == 0 else cout
            _conv(sd, f"{b}.conv1", cout, bin_, 3)
            _bn(sd, f"{b}.bn1", cout)
            _conv(sd, f"{b}.conv2", cout, cout, 3)
            _bn(sd, f"{b}.bn2", cout)
            if j == 0 and (cin != cout or stride != 1):
                _conv(sd, f"{b}.downsample.0", cout, bin_, 1)
                _bn(sd, f"{b}.downsample.1", cout)
    for arm, cin in (("cp.arm16", 256), ("cp.arm32", 512)):
        _conv_bn_relu(sd, f"{arm}.conv", cin, 128)
        _conv(sd, f"{arm}.conv_atten", 128, 128, 1)
        _bn(sd, f"{arm}.bn_atten", 128)
    _conv_bn_relu(sd, "cp.conv_head32", 128, 128)
    _conv_bn_relu(sd, "cp.conv_head16", 128, 128)
    _conv_bn_relu(sd, "cp.conv_avg", 512, 128, k=1)
    _conv_bn_relu(sd, "ffm.convblk", 256, 256, k=1)
    _conv(sd, "ffm.conv1", 64, 256, 1)
    _conv(sd, "ffm.conv2", 256, 64, 1)
    for head, cin, mid in (("conv_out", 256, 256), ("conv_out16", 128, 64), ("conv_out32", 128, 64)):
        _conv_bn_relu(sd, f"{head}.conv", cin, mid)
        _conv(sd, f"{head}.conv_out", num_class, mid, 1)
    return sd


def bisenet_state_dict(seed: int = 0, num_class: int = 19) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in layout(num_class).items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000, dtype=torch.long)
        elif len(shape) == 4:
            sd[key] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("weight"):            # BatchNorm scale
            sd[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:                                   # BatchNorm bias, running_mean
            sd[key] = 0.1 * torch.randn(shape, generator=g)
    return sd


def write_bisenet(path, seed: int = 0, num_class: int = 19) -> dict[str, torch.Tensor]:
    """torch.save of the plain state dict (as facexlib's release file is); returns the state dict."""
    sd = bisenet_state_dict(seed, num_class)
    torch.save(sd, str(path))
    return sd
