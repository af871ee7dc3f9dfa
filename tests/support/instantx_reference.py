"""InstantX's FLUX.1-dev IP-Adapter restated from its ComfyUI pack (Shakker-Labs/ComfyUI-IPAdapter-Flux,
flux/layers.py DoubleStreamBlockIPA / SingleStreamBlockIPA, attention_processor.py IPAFluxAttnProcessor2_0), on
ComfyUI's own block modules, as a test-only reference independent of Infuse's dispatcher: each block is replaced
by its whole restated forward (written with einops as the original is), installed as a plain "dit" patch."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from comfy.ldm.flux.math import attention


def _rms_norm(x, eps=1e-5):            # diffusers RMSNorm(128, eps=1e-5, elementwise_affine=False)
    dtype = x.dtype
    x = x.to(torch.float32)
    return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)


def ip_attention(num_heads, query, image_emb, to_k_ip, to_v_ip, scale):
    k = rearrange(image_emb @ to_k_ip.T, "B L (H D) -> B H L D", H=num_heads)
    v = rearrange(image_emb @ to_v_ip.T, "B L (H D) -> B H L D", H=num_heads)
    k, v = _rms_norm(k), _rms_norm(v)
    out = F.scaled_dot_product_attention(query, k, v, dropout_p=0.0, is_causal=False)
    return scale * rearrange(out, "B H L D -> B L (H D)", H=num_heads)


def double_block(b, img, txt, vec, pe, ip):
    img_mod1, img_mod2 = b.img_mod(vec)
    txt_mod1, txt_mod2 = b.txt_mod(vec)
    img_qkv = b.img_attn.qkv((1 + img_mod1.scale) * b.img_norm1(img) + img_mod1.shift)
    img_q, img_k, img_v = rearrange(img_qkv, "B L (K H D) -> K B H L D", K=3, H=b.num_heads)
    img_q, img_k = b.img_attn.norm(img_q, img_k, img_v)
    txt_qkv = b.txt_attn.qkv((1 + txt_mod1.scale) * b.txt_norm1(txt) + txt_mod1.shift)
    txt_q, txt_k, txt_v = rearrange(txt_qkv, "B L (K H D) -> K B H L D", K=3, H=b.num_heads)
    txt_q, txt_k = b.txt_attn.norm(txt_q, txt_k, txt_v)
    attn = attention(torch.cat((txt_q, img_q), dim=2), torch.cat((txt_k, img_k), dim=2),
                     torch.cat((txt_v, img_v), dim=2), pe=pe)
    txt_attn, img_attn = attn[:, : txt.shape[1]], attn[:, txt.shape[1]:]
    img_attn = img_attn + ip(b.num_heads, img_q)
    img = img + img_mod1.gate * b.img_attn.proj(img_attn)
    img = img + img_mod2.gate * b.img_mlp((1 + img_mod2.scale) * b.img_norm2(img) + img_mod2.shift)
    txt = txt + txt_mod1.gate * b.txt_attn.proj(txt_attn)
    txt = txt + txt_mod2.gate * b.txt_mlp((1 + txt_mod2.scale) * b.txt_norm2(txt) + txt_mod2.shift)
    return img, txt


def single_block(b, x, vec, pe, ip):
    mod, _ = b.modulation(vec)
    x_mod = (1 + mod.scale) * b.pre_norm(x) + mod.shift
    qkv, mlp = torch.split(b.linear1(x_mod), [3 * b.hidden_size, b.mlp_hidden_dim], dim=-1)
    q, k, v = rearrange(qkv, "B L (K H D) -> K B H L D", K=3, H=b.num_heads)
    q, k = b.norm(q, k, v)
    attn = attention(q, k, v, pe=pe)
    attn = attn + ip(b.num_heads, q)
    output = b.linear2(torch.cat((attn, b.mlp_act(mlp)), 2))
    return x + mod.gate * output


def install(model, image_emb: torch.Tensor, ip_layers: list[tuple[torch.Tensor, torch.Tensor]], scale: float):
    """Replace every block of `model` (a clone) by its InstantX forward; ip_layers: (to_k_ip, to_v_ip) per block,
    double blocks then single blocks, as the file numbers them."""
    dm = model.model.diffusion_model
    blocks = [("double_block", i, b) for i, b in enumerate(dm.double_blocks)] + \
             [("single_block", i, b) for i, b in enumerate(dm.single_blocks)]
    for (kind, i, b), (wk, wv) in zip(blocks, ip_layers, strict=True):
        ip = (lambda wk, wv: lambda heads, q: ip_attention(heads, q, image_emb, wk, wv, scale))(wk, wv)
        if kind == "double_block":
            def patch(args, extra, b=b, ip=ip):
                img, txt = double_block(b, args["img"], args["txt"], args["vec"], args["pe"], ip)
                return {"img": img, "txt": txt}
        else:
            def patch(args, extra, b=b, ip=ip):
                return {"img": single_block(b, args["img"], args["vec"], args["pe"], ip)}
        model.set_model_patch_replace(patch, "dit", kind, i)
