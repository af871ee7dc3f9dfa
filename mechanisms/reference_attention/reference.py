"""Double UNet / reference attention: a reference UNet pass on the reference latent, whose self-attention inputs
(the hidden states after norm1, at every transformer block) are fed to the main UNet's self-attention.

- concat (IDM-VTON's GarmentNet -> TryonNet, "reference-only"): the main self-attention attends over
  cat([x, ref]) and keeps the first N tokens: Attn(Q, cat(K, W_k ref), cat(V, W_v ref)). With weight w the
  dispatcher blends: out = base + w * (concat - base), so w = 1 is IDM-VTON's attention and w = 0 the plain one.
- cross (Intelligent Grimm): an extra attention over the reference features, added with a weight:
  out = base + w * Attn(Q, W_k ref, W_v ref).

The reference pass runs once per model call for the batch entry that needs it (batch 1, not once per CFG
copy) through an APPLY_MODEL wrapper, or once every `cache_every` steps. Under CFG the unconditional rows see
zero reference features, as in IDM-VTON's pipeline. Capture and use go through ComfyUI's own patch points
(`attn1_patch` in the reference pass, the dispatcher's attn1 replace patch in the main pass).
"""
from __future__ import annotations

import torch

from ..patching.dispatcher import Contribution, SiteCall, add_contribution, base_attention
from ..patching.surfaces.unet import Site, SiteKey

MODES = ("concat", "cross")
WRAPPER_KEY = "infuse.reference.pass"


class ReferenceAttention(Contribution):
    kind = "attn1"

    def __init__(self, node: str, mode: str, latent: torch.Tensor, projections: dict, source=None,
                 noised: bool = True, cache_every: int = 1, seed: int = 0, context: torch.Tensor | None = None,
                 **schedule):
        """`latent`: the reference latent [1, C, H, W] in the model's latent space (process_latent_in applied);
        `projections`: site -> (to_k, to_v) modules of the main UNet's attn1; `source`: a ModelPatcher for a
        separate reference UNet or None for the main model; `noised`: the reference latent noised to the
        current sigma (reference-only) or clean, fed as is at the current timestep (IDM-VTON's garment net);
        `context`: the reference pass's text tokens [1, T, C] (default: the main pass's cond tokens)."""
        super().__init__(node, **schedule)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode, self.latent, self.projections, self.source = mode, latent, projections, source
        self.context = context
        self.noised, self.cache_every, self.seed = noised, max(1, int(cache_every)), seed
        self.features: dict[SiteKey, torch.Tensor] = {}
        self._kv: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}   # projected features, per pass
        self.passes = 0                      # reference passes this run (for tests and benchmarks)
        self._step = 0
        self._last_sigma = None

    # --- the reference pass ---------------------------------------------------------------------------
    def prepare_run(self, latent_shape, model_sampling) -> None:
        super().prepare_run(latent_shape, model_sampling)
        self.features, self._kv, self.passes, self._step, self._last_sigma = {}, {}, 0, 0, None

    def _due(self, sigma: float) -> bool:
        if sigma != self._last_sigma:
            if self._last_sigma is not None:
                self._step += 1
            self._last_sigma = sigma
            return not self.features or self._step % self.cache_every == 0
        return not self.features

    @torch.no_grad()
    def capture(self, main_model, t: torch.Tensor, c_crossattn: torch.Tensor, transformer_options: dict,
                extra: dict) -> None:
        sigma = t[:1]
        if not self.acts_anywhere() or not self.active_at(float(sigma)):     # the gate of the attention it feeds
            return
        if not self._due(float(sigma)):
            return
        model = self.source.model if self.source is not None else main_model
        cond_or_uncond = transformer_options.get("cond_or_uncond") or [0]
        chunk = c_crossattn.shape[0] // len(cond_or_uncond)
        row = cond_or_uncond.index(0) * chunk if 0 in cond_or_uncond else 0
        context = self.context if self.context is not None else c_crossattn[row:row + 1]
        kwargs = {}
        if self.source is None or getattr(model.diffusion_model, "num_classes", None) is not None:
            kwargs = {k: v[row:row + 1] for k, v in extra.items()
                      if isinstance(v, torch.Tensor) and v.shape[:1] == c_crossattn.shape[:1]}
        device = c_crossattn.device
        latent = self.latent.to(device, torch.float32)
        captured: dict[SiteKey, torch.Tensor] = {}

        def capture_input(n, context_attn1, value_attn1, extra_options):
            block = extra_options["block"]
            captured[(block[0], block[1], extra_options.get("block_index", 0))] = n
            return n, context_attn1, value_attn1

        options = {"cond_or_uncond": [0], "sigmas": sigma, "patches": {"attn1_patch": [capture_input]}}
        sigma = sigma.to(device).float()
        if self.noised:
            g = torch.Generator().manual_seed(self.seed)
            noise = torch.randn(latent.shape, generator=g).to(device)
            x = model.model_sampling.noise_scaling(sigma, noise, latent)
            model._apply_model(x, sigma, c_crossattn=context, transformer_options=options, **kwargs)
        else:   # the clean latent, unscaled, at the current timestep: unet_encoder(cloth, t, text) in IDM-VTON
            dtype = model.manual_cast_dtype or model.get_dtype()
            model.diffusion_model(latent.to(dtype), model.model_sampling.timestep(sigma).float(),
                                  context=context.to(device, dtype), transformer_options=options,
                                  **{k: v.to(device, dtype) for k, v in kwargs.items()})
        self.features = captured
        self._kv = {}
        self.passes += 1

    # --- the use in the main pass ---------------------------------------------------------------------
    def _ref_kv(self, site: SiteKey, call: SiteCall, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """W_k ref, W_v ref for the rows of this call (zeros for uncond rows), projected once per pass."""
        key = (site, call.chunks, call.chunk_size, like.device, like.dtype)
        kv = self._kv.get(key)
        if kv is None:
            ref = self.features[site].to(like.device, like.dtype)
            to_k, to_v = self.projections[site]
            parts = []
            for proj in (to_k, to_v):
                projected = proj(ref)
                rows = [projected if branch == 0 else torch.zeros_like(projected) for branch in call.chunks]
                parts.append(torch.cat([r.expand(call.chunk_size, -1, -1) for r in rows]))
            kv = self._kv[key] = (parts[0], parts[1])
        return kv

    @property
    def extends_kv(self) -> bool:
        """Concat mode at full weight: the dispatcher folds the reference keys into its one attention."""
        return self.mode == "concat"

    def extra_kv(self, q, k, v, call: SiteCall) -> tuple[torch.Tensor, torch.Tensor]:
        if call.site not in self.features:
            return k[:, :0], v[:, :0]
        return self._ref_kv(call.site, call, q)

    def delta(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, call: SiteCall) -> torch.Tensor:
        if call.site not in self.features:
            return torch.zeros_like(q)
        k_ref, v_ref = self._ref_kv(call.site, call, q)
        if self.mode == "cross":
            return base_attention(q, k_ref, v_ref, call.extra_options)
        full = base_attention(q, torch.cat([k, k_ref], dim=1), torch.cat([v, v_ref], dim=1), call.extra_options)
        return full - call.plain(q, k, v)

    def models(self) -> list:
        return [self.source] if self.source is not None else []


def attn1_projections(model, sites: list[Site]) -> dict:
    """(to_k, to_v) of every site's self-attention, the modules the main UNet runs (weight patches included)."""
    return {s.key: (model.get_model_object(f"diffusion_model.{s.path}.attn1.to_k"),
                    model.get_model_object(f"diffusion_model.{s.path}.attn1.to_v")) for s in sites}


def _reference_pass(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
    from ..patching.dispatcher import contributions

    for c in contributions({"transformer_options": transformer_options}):
        if isinstance(c, ReferenceAttention):
            c.capture(executor.class_obj, t, c_crossattn, transformer_options, kwargs)
    return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)


def apply_reference(model, contribution: ReferenceAttention, sites: list[Site]) -> None:
    """Register a reference contribution at every site's self-attention and the per-call reference pass."""
    import comfy.patcher_extension

    add_contribution(model, contribution, sites)
    if not model.get_wrappers(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY):
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY, _reference_pass)
