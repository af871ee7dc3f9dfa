"""PuLID's published code restated as a test-only reference, written from the original (ToTheBeginning/PuLID
pulid/encoders.py, encoders_transformer.py, attention_processor.py IDAttnProcessor2_0, flux/model.py), independent of
the pack's modules: functional ops on the file's state dict, a diffusers attention processor, plain "dit" patches."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _mlp(sd, p, x, n=3):
    for i in range(n):
        x = F.linear(x, sd[f"{p}.{3 * i}.weight"], sd[f"{p}.{3 * i}.bias"])
        if i < n - 1:
            x = F.leaky_relu(F.layer_norm(x, x.shape[-1:], sd[f"{p}.{3 * i + 1}.weight"], sd[f"{p}.{3 * i + 1}.bias"]))
    return x


def id_encoder(sd, x, y):
    """IDEncoder.forward (num_token 5, context_dim 2048)."""
    x = _mlp(sd, "body", x).reshape(-1, 5, 2048)
    hidden = [_mlp(sd, f"mapping_{i}", emb[:, :1]) + _mlp(sd, f"mapping_patch_{i}", emb[:, 1:]).mean(dim=1, keepdim=True)
              for i, emb in enumerate(y)]
    return torch.cat([x, torch.cat(hidden, dim=1)], dim=1)


def _perceiver_attention(sd, p, x, latents, heads=16, dim_head=64):
    x = F.layer_norm(x, x.shape[-1:], sd[f"{p}.norm1.weight"], sd[f"{p}.norm1.bias"])
    latents = F.layer_norm(latents, latents.shape[-1:], sd[f"{p}.norm2.weight"], sd[f"{p}.norm2.bias"])
    b, l, _ = latents.shape
    q = F.linear(latents, sd[f"{p}.to_q.weight"])
    k, v = F.linear(torch.cat((x, latents), dim=-2), sd[f"{p}.to_kv.weight"]).chunk(2, dim=-1)
    q, k, v = (t.view(b, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    scale = 1 / math.sqrt(math.sqrt(dim_head))
    weight = torch.softmax(((q * scale) @ (k * scale).transpose(-2, -1)).float(), dim=-1).type(q.dtype)
    out = (weight @ v).permute(0, 2, 1, 3).reshape(b, l, -1)
    return F.linear(out, sd[f"{p}.to_out.weight"])


def id_former(sd, x, y, depth=10, num_id_token=5, num_queries=32, dim=1024):
    """IDFormer.forward."""
    latents = sd["latents"].repeat(x.size(0), 1, 1)
    num_duotu = x.shape[1] if x.ndim == 3 else 1
    x = _mlp(sd, "id_embedding_mapping", x).reshape(-1, num_id_token * num_duotu, dim)
    latents = torch.cat((latents, x), dim=1)
    per = depth // 5
    for i in range(5):
        ctx = torch.cat((x, _mlp(sd, f"mapping_{i}", y[i])), dim=1)
        for j in range(i * per, (i + 1) * per):
            latents = _perceiver_attention(sd, f"layers.{j}.0", ctx, latents) + latents
            h = F.layer_norm(latents, latents.shape[-1:], sd[f"layers.{j}.1.0.weight"], sd[f"layers.{j}.1.0.bias"])
            latents = F.linear(F.gelu(F.linear(h, sd[f"layers.{j}.1.1.weight"])), sd[f"layers.{j}.1.3.weight"]) + latents
    return latents[:, :num_queries] @ sd["proj_out"]


class IDAttnProcessor2_0:
    """IDAttnProcessor2_0.__call__ for a diffusers attn2, with the module globals NUM_ZERO / ORTHO / ORTHO_v2 as
    arguments; `id_embedding` per batch row (cond / uncond as the caller lays them out)."""

    def __init__(self, id_to_k, id_to_v, id_embedding, id_scale, num_zero=0, ortho=False, ortho_v2=False):
        self.id_to_k, self.id_to_v, self.id_embedding, self.id_scale = id_to_k, id_to_v, id_embedding, id_scale
        self.num_zero, self.ortho, self.ortho_v2 = num_zero, ortho, ortho_v2

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        batch_size = hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        hidden_states = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        id_embedding = self.id_embedding
        if self.num_zero:
            zeros = torch.zeros((id_embedding.size(0), self.num_zero, id_embedding.size(-1)), dtype=id_embedding.dtype)
            id_embedding = torch.cat((id_embedding, zeros), dim=1)
        id_key = F.linear(id_embedding, self.id_to_k).to(query.dtype)
        id_value = F.linear(id_embedding, self.id_to_v).to(query.dtype)
        id_key = id_key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        id_value = id_value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        id_hidden_states = F.scaled_dot_product_attention(query, id_key, id_value, attn_mask=None, dropout_p=0.0,
                                                          is_causal=False)
        id_hidden_states = id_hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        if not self.ortho and not self.ortho_v2:
            hidden_states = hidden_states + self.id_scale * id_hidden_states
        else:
            projection = (torch.sum((hidden_states * id_hidden_states), dim=-2, keepdim=True) /
                          torch.sum((hidden_states * hidden_states), dim=-2, keepdim=True) * hidden_states)
            if self.ortho_v2:
                attn_map = query @ id_key.transpose(-2, -1)
                attn_mean = attn_map.softmax(dim=-1).mean(dim=1)
                attn_mean = attn_mean[:, :, :5].sum(dim=-1, keepdim=True)
                orthogonal = id_hidden_states + (attn_mean - 1) * projection
            else:
                orthogonal = id_hidden_states - projection
            hidden_states = hidden_states + self.id_scale * orthogonal
        hidden_states = attn.to_out[0](hidden_states)
        return attn.to_out[1](hidden_states)


def perceiver_attention_ca(sd, p, x, latents, heads=16, dim_head=128):
    """PerceiverAttentionCA.forward(x = ID tokens, latents = image tokens)."""
    x = F.layer_norm(x, x.shape[-1:], sd[f"{p}.norm1.weight"], sd[f"{p}.norm1.bias"])
    latents = F.layer_norm(latents, latents.shape[-1:], sd[f"{p}.norm2.weight"], sd[f"{p}.norm2.bias"])
    b, seq_len, _ = latents.shape
    q = F.linear(latents, sd[f"{p}.to_q.weight"])
    k, v = F.linear(x, sd[f"{p}.to_kv.weight"]).chunk(2, dim=-1)
    q, k, v = (t.view(b, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    scale = 1 / math.sqrt(math.sqrt(dim_head))
    weight = torch.softmax(((q * scale) @ (k * scale).transpose(-2, -1)).float(), dim=-1).type(q.dtype)
    out = (weight @ v).permute(0, 2, 1, 3).reshape(b, seq_len, -1)
    return F.linear(out, sd[f"{p}.to_out.weight"])


def install_flux(model, sd, id_tokens, id_weight, n_txt):
    """flux/model.py's PuLID steps as "dit" patches on a clone: after double block i (i % 2 == 0) and single block i
    (i % 4 == 0) the image tokens get id_weight * pulid_ca[ca_idx](id, img)."""
    dm = model.model.diffusion_model
    ca_idx = 0
    for i in range(len(dm.double_blocks)):
        if i % 2 == 0:
            def patch(args, extra, p=f"pulid_ca.{ca_idx}"):
                out = extra["original_block"](args)
                return {**out, "img": out["img"] + id_weight * perceiver_attention_ca(sd, p, id_tokens, out["img"])}
            model.set_model_patch_replace(patch, "dit", "double_block", i)
            ca_idx += 1
    for i in range(len(dm.single_blocks)):
        if i % 4 == 0:
            def patch(args, extra, p=f"pulid_ca.{ca_idx}"):
                x = extra["original_block"](args)["img"]
                real_img, txt = x[:, n_txt:, ...], x[:, :n_txt, ...]
                real_img = real_img + id_weight * perceiver_attention_ca(sd, p, id_tokens, real_img)
                return {"img": torch.cat((txt, real_img), 1)}
            model.set_model_patch_replace(patch, "dit", "single_block", i)
            ca_idx += 1
