"""PhotoMaker's published code restated as a test-only reference, written from the original (TencentARC/PhotoMaker
photomaker/model.py, model_v2.py, resampler.py, pipeline.py's encode_prompt_with_trigger_word), independent of the
pack's modules: functional ops on a file's `id_encoder` state dict (fp32 unless the caller casts).

The image tower is HF transformers' CLIPVisionModel (quick_gelu, pre_layrnorm, LayerNorm eps 1e-5, attention scale
head_dim ** -0.5); the sizes come from the state dict, the head count defaults to width // 64 (ViT-L/14: 16)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-5
V2_TOKENS, V2_HEADS, V2_DIM_HEAD = 2, 16, 128


def _ln(sd, p, x):
    return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"], EPS)


def _lin(sd, p, x):
    return F.linear(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"))


def vision_hidden(sd: dict, pixels: torch.Tensor, heads: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """HF CLIPVisionTransformer.forward on [N, 3, H, W] pixels: (last_hidden_state [N, 257, width], the encoder output
    without post_layernorm; pooled [N, width] = post_layernorm(CLS))."""
    v = "vision_model"
    patch = sd[f"{v}.embeddings.patch_embedding.weight"]
    width = patch.shape[0]
    heads = heads or width // 64
    layers = sum(1 for k in sd if k.startswith(f"{v}.encoder.layers.") and k.endswith(".layer_norm1.weight"))
    x = F.conv2d(pixels.to(patch.dtype), patch, stride=patch.shape[-1]).flatten(2).transpose(1, 2)
    cls = sd[f"{v}.embeddings.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd[f"{v}.embeddings.position_embedding.weight"]
    x = _ln(sd, f"{v}.pre_layrnorm", x)
    n, length, _ = x.shape
    for i in range(layers):
        p = f"{v}.encoder.layers.{i}"
        h = _ln(sd, f"{p}.layer_norm1", x)
        q, k, val = (_lin(sd, f"{p}.self_attn.{s}_proj", h).view(n, length, heads, -1).transpose(1, 2)
                     for s in ("q", "k", "v"))
        w = torch.softmax((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1, dtype=torch.float32).to(q.dtype)
        x = x + _lin(sd, f"{p}.self_attn.out_proj", (w @ val).transpose(1, 2).reshape(n, length, width))
        h = _lin(sd, f"{p}.mlp.fc1", _ln(sd, f"{p}.layer_norm2", x))
        x = x + _lin(sd, f"{p}.mlp.fc2", h * torch.sigmoid(1.702 * h))
    return x, _ln(sd, f"{v}.post_layernorm", x[:, 0, :])


def _mlp(sd, p, x, residual):
    """MLP: fc2(GELU(fc1(LN(x)))) (+ x), exact (erf) GELU."""
    out = _lin(sd, f"{p}.fc2", F.gelu(_lin(sd, f"{p}.fc1", _ln(sd, f"{p}.layernorm", x))))
    return out + x if residual else out


def fuse_rows(sd: dict, text_rows: torch.Tensor, id_rows: torch.Tensor) -> torch.Tensor:
    """FuseModule.fuse_fn on [R, 2048] rows: LN(mlp2(mlp1([text, id]) + text))."""
    f = "fuse_module"
    stacked = _mlp(sd, f"{f}.mlp1", torch.cat([text_rows, id_rows], dim=-1), residual=False) + text_rows
    return _ln(sd, f"{f}.layer_norm", _mlp(sd, f"{f}.mlp2", stacked, residual=True))


def fuse(sd: dict, prompt_embeds: torch.Tensor, id_embeds: torch.Tensor,
         class_tokens_mask: torch.Tensor) -> torch.Tensor:
    """FuseModule.forward: prompt_embeds [b, seq, 2048], id_embeds [b, N, k, 2048], class_tokens_mask [b, seq] bool.
    Images n < mask.sum() are kept (all of the batch's rows flattened, image-major then token); their rows replace the
    masked positions in order. The original writes into its argument (masked_scatter_ on a view); this returns a
    copy and leaves prompt_embeds as it was."""
    id_embeds = id_embeds.to(prompt_embeds.dtype)
    num_inputs = class_tokens_mask.sum().unsqueeze(0)
    batch_size, max_num_inputs = id_embeds.shape[:2]
    seq_length = prompt_embeds.shape[1]
    flat_id = id_embeds.reshape(-1, id_embeds.shape[-2], id_embeds.shape[-1])
    valid = torch.arange(max_num_inputs, device=flat_id.device)[None, :] < num_inputs[:, None]
    valid_id = flat_id[valid.flatten()].reshape(-1, id_embeds.shape[-1])
    rows = prompt_embeds.reshape(-1, prompt_embeds.shape[-1]).clone()
    mask = class_tokens_mask.reshape(-1)
    fused = fuse_rows(sd, rows[mask], valid_id)
    if fused.shape[0] != int(mask.sum()):
        raise AssertionError(f"{int(mask.sum())} != {fused.shape[0]}")
    rows.masked_scatter_(mask[:, None], fused.to(rows.dtype))
    return rows.view(batch_size, seq_length, -1)


def id_embeds_v1(sd: dict, pixels: torch.Tensor, heads: int | None = None) -> torch.Tensor:
    """v1's ID embedding per image: [visual_projection(pooled) 768, visual_projection_2(pooled) 1280]
    -> [N, 1, 2048]."""
    _, pooled = vision_hidden(sd, pixels, heads)
    ids = torch.cat([F.linear(pooled, sd["visual_projection.weight"]),
                     F.linear(pooled, sd["visual_projection_2.weight"])], dim=-1)
    return ids.unsqueeze(1)


def _perceiver_attention(sd, p, x, latents):
    """PerceiverAttention.forward: keys / values over [x; latents], (q * s) @ (k * s)^T with s = dim_head ** -0.25,
    softmax in float32."""
    x, latents = _ln(sd, f"{p}.norm1", x), _ln(sd, f"{p}.norm2", latents)
    b, length, _ = latents.shape
    q = F.linear(latents, sd[f"{p}.to_q.weight"])
    k, v = F.linear(torch.cat((x, latents), dim=-2), sd[f"{p}.to_kv.weight"]).chunk(2, dim=-1)
    heads = latents.shape[-1] // V2_DIM_HEAD                       # cross_attention_dim // 128 (real: 16)
    q, k, v = (t.reshape(b, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    scale = 1 / math.sqrt(math.sqrt(V2_DIM_HEAD))
    weight = (q * scale) @ (k * scale).transpose(-2, -1)
    weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
    out = (weight @ v).permute(0, 2, 1, 3).reshape(b, length, -1)
    return F.linear(out, sd[f"{p}.to_out.weight"])


def qformer_perceiver(sd: dict, arcface: torch.Tensor, last_hidden_state: torch.Tensor) -> torch.Tensor:
    """QFormerPerceiver.forward: t = LN(token_proj(arcface)) as [N, 2, 2048]; FacePerceiverResampler(t, hidden)
    (proj_in, 4 x (attention + FF, each residual), proj_out, norm_out); returns t + resampler output."""
    q = "qformer_perceiver"
    x = _lin(sd, f"{q}.token_proj.2", F.gelu(_lin(sd, f"{q}.token_proj.0", arcface)))
    latents = _ln(sd, f"{q}.token_norm", x.reshape(-1, V2_TOKENS, x.shape[-1] // V2_TOKENS))
    tokens = latents
    p = f"{q}.perceiver_resampler"
    hidden = _lin(sd, f"{p}.proj_in", last_hidden_state)
    depth = sum(1 for k in sd if k.startswith(f"{p}.layers.") and k.endswith(".0.to_q.weight"))
    for i in range(depth):
        latents = _perceiver_attention(sd, f"{p}.layers.{i}.0", hidden, latents) + latents
        ff = f"{p}.layers.{i}.1"
        h = F.gelu(F.linear(_ln(sd, f"{ff}.0", latents), sd[f"{ff}.1.weight"]))
        latents = F.linear(h, sd[f"{ff}.3.weight"]) + latents
    out = _ln(sd, f"{p}.norm_out", _lin(sd, f"{p}.proj_out", latents))
    return tokens + 1.0 * out


def id_embeds_v2(sd: dict, pixels: torch.Tensor, arcface: torch.Tensor, heads: int | None = None) -> torch.Tensor:
    """v2's ID embedding per image from the CLIP last_hidden_state and the raw ArcFace embedding [N, 512]
    -> [N, 2, 2048]."""
    hidden, _ = vision_hidden(sd, pixels, heads)
    return qformer_perceiver(sd, arcface.reshape(hidden.shape[0], -1).to(hidden.dtype), hidden)


def _images(pixels):
    """[b, N, 3, H, W] as the original takes it ([N, 3, H, W] is read as b = 1) -> (flat [b N, 3, H, W], b, N)."""
    if pixels.ndim == 4:
        pixels = pixels.unsqueeze(0)
    b, n = pixels.shape[:2]
    return pixels.reshape(b * n, *pixels.shape[2:]), b, n


def encode_v1(sd: dict, pixels: torch.Tensor, prompt_embeds: torch.Tensor, class_tokens_mask: torch.Tensor,
              heads: int | None = None) -> torch.Tensor:
    """PhotoMakerIDEncoder.forward(id_pixel_values, prompt_embeds, class_tokens_mask)."""
    flat, b, n = _images(pixels)
    ids = id_embeds_v1(sd, flat, heads).view(b, n, 1, -1)
    return fuse(sd, prompt_embeds, ids, class_tokens_mask)


def encode_v2(sd: dict, pixels: torch.Tensor, arcface: torch.Tensor, prompt_embeds: torch.Tensor,
              class_tokens_mask: torch.Tensor, heads: int | None = None) -> torch.Tensor:
    """PhotoMakerIDEncoder_CLIPInsightfaceExtendtoken.forward(id_pixel_values, prompt_embeds, class_tokens_mask,
    id_embeds = arcface [b, N, 512] or [b N, 512])."""
    flat, b, n = _images(pixels)
    ids = id_embeds_v2(sd, flat, arcface.reshape(b * n, -1), heads).view(b, n, V2_TOKENS, -1)
    return fuse(sd, prompt_embeds, ids, class_tokens_mask)


def class_token_expansion(ids: list[int], trigger_id: int, n_images: int, tokens_per_image: int, pad_id: int,
                          max_len: int = 77) -> tuple[list[int], list[bool]]:
    """encode_prompt_with_trigger_word's id handling for one tokenizer: drop the trigger token, repeat the token
    before it (the class word's last piece; BOS if the trigger comes first) n_images x tokens_per_image times, then
    cut to / pad with pad_id to max_len; the mask marks the repeated positions (BOS at 0).
    `ids`: the tokenizer's output with BOS / EOS (v1, ccd1f7c: unpadded `tokenizer.encode`; v2-era HEAD: padded and
    truncated to 77 first). v1 used tokens_per_image 1; HEAD uses 2 for either version. Exactly one trigger, or
    ValueError (as the original)."""
    clean, class_index = [], []
    for token in ids:
        if token == trigger_id:
            class_index.append(len(clean) - 1)
        else:
            clean.append(token)
    if len(class_index) != 1:
        raise ValueError(f"PhotoMaker needs exactly one trigger word, found {len(class_index)}")
    index, repeat = class_index[0], n_images * tokens_per_image
    clean = clean[:index] + [clean[index]] * repeat + clean[index + 1:]
    clean = clean[:max_len] if len(clean) > max_len else clean + [pad_id] * (max_len - len(clean))
    return clean, [index <= i < index + repeat for i in range(len(clean))]
