"""The one dispatcher: a single Infuse replace patch per attention site and kind, running contributions.

ComfyUI calls an `attn1` / `attn2` replace patch with the block's projected `q, k, v` and expects the
attention output before `to_out`. For every site it patches, Infuse installs one `SiteDispatcher` there;
mechanisms do not install patches, they register `Contribution`s. The dispatcher computes the base
attention (ComfyUI's own optimized attention, or a replace patch another pack put at the same site
first) and adds each active contribution:

    out = base(q, k, v) + sum_i  weight_i * site_weight_i * mask_i * delta_i(q, k, v)

A contribution that appends keys/values instead (reference concat, `extends_kv`) is folded into ComfyUI's
attention when it acts at full weight on every row: base = Attn(q, [k, k_extra], [v, v_extra]). A foreign
base only ever sees the q / k / v ComfyUI gave it; the extension is then added as its exact difference to
the plain attention, Attn(q, [k, k_extra], [v, v_extra]) - Attn(q, k, v).

Foreign patches installed after Infuse (another pack's replace patch at a site Infuse holds, or one a guidance
node like PAG sets for a single call at the (block, number) key) are taken as the base for that call by an
APPLY_MODEL wrapper (`foreign.py`); they are never dropped and never see extended keys.

Schedule (sigma range), CFG branch selection and spatial masks are handled here, once, for every
mechanism alike. A contribution whose weight is 0 is skipped outright, so the output is then bit-identical
to the unpatched model.

Clone safety: `ModelPatcher.clone()` deep-copies `model_options`. Dispatchers are immutable (adding a
contribution builds a new dispatcher) and deep-copy to themselves, so adapter weights and embeddings are
shared between clones, never copied.
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch

from ...core.errors import reported_as
from .contribution import (Contribution, SiteCall, active_contributions, base_attention,  # noqa: F401 (re-exported)
                           rows_of)
from .surfaces.unet import Site, SiteKey, model_sites

ATTENTION_KINDS = ("attn1", "attn2")
RUN_WRAPPER_KEY = "infuse.dispatcher.run"
ADDITIONAL_MODELS_KEY = "infuse.contributions"
REGISTRY_KEY = "infuse.registered"


class SiteDispatcher:
    """The Infuse replace patch at one site for one attention kind."""

    _infuse_dispatcher = True  # recognised across module reloads, where isinstance would fail

    def __init__(self, site: SiteKey, kind: str, base=None, contributions: tuple[Contribution, ...] = (),
                 base_outer: bool = False):
        self.site = site
        self.kind = kind
        self.base = base                   # a replace patch another pack installed here first, or None
        self.base_outer = base_outer       # base came from the (block, number) key, which ComfyUI tries second
        self.contributions = tuple(contributions)

    def with_contribution(self, contribution: Contribution) -> "SiteDispatcher":
        return SiteDispatcher(self.site, self.kind, self.base, self.contributions + (contribution,), self.base_outer)

    def with_base(self, base, outer: bool) -> "SiteDispatcher":
        return SiteDispatcher(self.site, self.kind, base, self.contributions, outer)

    def _attend(self, q, k, v, extra_options):
        if self.base is not None:
            return self.base(q, k, v, extra_options)
        return base_attention(q, k, v, extra_options)

    def _plan(self, extra_options: dict, cond_or_uncond: list) -> list[tuple[Contribution, float, list[int]]]:
        """The contributions active in this call: (contribution, weight here, chunks it applies to)."""
        return active_contributions(self.contributions, self.site, extra_options, cond_or_uncond)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra_options: dict) -> torch.Tensor:
        if not self.contributions:
            return self._attend(q, k, v, extra_options)
        cond_or_uncond = extra_options.get("cond_or_uncond") or [0]
        chunk = q.shape[0] // len(cond_or_uncond)
        plan = self._plan(extra_options, cond_or_uncond)

        # Contributions that add keys/values (reference concat) at full weight on every row extend ComfyUI's
        # attention itself: one attention over [K, K_extra] instead of a base and a second, longer one. A foreign
        # base never gets extended inputs: it cannot know what they are (SAG, PAG and others index by tokens).
        k_base, v_base, additive = k, v, []
        every_row = tuple(cond_or_uncond)
        plain = self.base is None
        for c, weight, picked in plan:
            if plain and weight == 1.0 and c.mask is None and len(picked) == len(cond_or_uncond) and c.extends_kv:
                k_extra, v_extra = c.extra_kv(q, k, v, SiteCall(self.site, every_row, chunk, extra_options))
                k_base, v_base = torch.cat([k_base, k_extra], dim=1), torch.cat([v_base, v_extra], dim=1)
            else:
                additive.append((c, weight, picked))
        base = self._attend(q, k_base, v_base, extra_options)
        out = base

        for c, weight, picked in additive:
            rows = None if len(picked) == len(cond_or_uncond) else rows_of(picked, chunk, q.device)
            chunks = tuple(cond_or_uncond[i] for i in picked)
            if rows is None:
                call = SiteCall(self.site, chunks, chunk, extra_options, base, plain)
                d = c.delta(q, k, v, call)
            else:
                call = SiteCall(self.site, chunks, chunk, extra_options, base[rows], plain)
                d = c.delta(q[rows], k[rows], v[rows], call)
            if c.mask is not None:
                d = d * c.token_mask(q.shape[1], call, d)
            d = d.to(out.dtype)
            if rows is None:
                out = out.add(d, alpha=weight)
            elif isinstance(rows, slice):
                out = out.clone()
                out[rows].add_(d, alpha=weight)
            else:
                out = out.index_add(0, rows, d, alpha=weight)
        return out

    # --- ComfyUI's patch protocol -------------------------------------------------------------------
    def __deepcopy__(self, memo):
        if self.base is None:
            return self
        return self.with_base(copy.deepcopy(self.base, memo), self.base_outer)

    def to(self, device_or_dtype):
        base = self.base
        if base is not None and hasattr(base, "to"):
            base = base.to(device_or_dtype)
        return self if base is self.base else self.with_base(base, self.base_outer)


def _is_dispatcher(patch) -> bool:
    return getattr(patch, "_infuse_dispatcher", False) is True


def install(model, kind: str, sites: Iterable[Site], contribution: Contribution | None = None) -> None:
    """Put (or extend) the Infuse dispatcher at each site of `model`, a ModelPatcher the caller cloned."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention kind must be one of {ATTENTION_KINDS}, got {kind!r}")
    sites = list(sites)
    if contribution is not None:
        register(model, contribution, (s.key for s in sites))
    for site in sites:
        replace = model.model_options["transformer_options"].get("patches_replace", {}).get(kind, {})
        current = replace.get(site.key)
        if _is_dispatcher(current):
            new = current if contribution is None or contribution in current.contributions \
                else current.with_contribution(contribution)
        else:
            # ComfyUI falls back from (block, number, depth) to (block, number): keep whichever it would call.
            # A foreign patch that replaced a dispatcher here keeps everything registered here as well.
            base = current if current is not None else replace.get(site.key[:2])
            new = SiteDispatcher(site.key, kind, base, registered_at(model.model_options, kind, site.key),
                                 base_outer=current is None and base is not None)
        model.set_model_patch_replace(new, kind, *site.key)
    prepare_runs(model)
    from .foreign import install_rebinding

    install_rebinding(model)


def add_contribution(model, contribution: Contribution, sites: Iterable[Site] | None = None) -> None:
    """Register a contribution at `sites` (default: every site of the model) of a cloned ModelPatcher."""
    if sites is None:
        sites = model_sites(model)
    install(model, contribution.kind, sites, contribution)
    load_with_model(model, contribution)


def register(model, contribution: Contribution, keys: Iterable) -> None:
    """Record `contribution` at `keys` in the model's registry (once), for every surface alike."""
    contribution.site_keys = contribution.site_keys | set(keys)
    options = model.model_options["transformer_options"]
    registered = options.get(REGISTRY_KEY, Registered())
    if not any(c is contribution for c in registered):
        options[REGISTRY_KEY] = Registered(registered + (contribution,))


def registered_at(model_options: dict, kind: str, key) -> tuple[Contribution, ...]:
    """The contributions registered for `kind` at `key`, in registration order."""
    registry = model_options.get("transformer_options", {}).get(REGISTRY_KEY, ())
    return tuple(c for c in registry if c.kind == kind and key in c.site_keys)


def prepare_runs(model) -> None:
    """Bind every registered contribution's schedule, and check it against the latent, once per sampling run."""
    if not model.get_wrappers(_outer_sample(), RUN_WRAPPER_KEY):
        model.add_wrapper_with_key(_outer_sample(), RUN_WRAPPER_KEY, _prepare_run)


def load_with_model(model, contribution: Contribution) -> None:
    """The extra models a contribution runs (a reference UNet, say), loaded by ComfyUI with the model before
    sampling (device placement, offload, dtype)."""
    extra = contribution.models()
    if extra:
        model.set_additional_models(ADDITIONAL_MODELS_KEY, model.get_additional_models_with_key(ADDITIONAL_MODELS_KEY)
                                    + extra)


def dispatchers(model_options: dict) -> list[SiteDispatcher]:
    replace = model_options.get("transformer_options", {}).get("patches_replace", {})
    return [p for kind in ATTENTION_KINDS for p in replace.get(kind, {}).values() if _is_dispatcher(p)]


class Registered(tuple):
    """The contributions registered on a model, in order: kept in its transformer_options (so another pack's
    patch replacing a dispatcher cannot lose them) and shared by clones like the dispatchers."""

    def __deepcopy__(self, memo):
        return self


def contributions(model_options: dict) -> list[Contribution]:
    """Every contribution registered on a model, each once, in registration order."""
    return list(model_options.get("transformer_options", {}).get(REGISTRY_KEY, ()))


def _outer_sample():
    import comfy.patcher_extension

    return comfy.patcher_extension.WrappersMP.OUTER_SAMPLE


def _prepare_run(executor, noise, latent_image, sampler, sigmas, *args, **kwargs):
    """Once per sampling run, before the first step: bind schedules and validate against the latent."""
    guider = executor.class_obj
    model_sampling = guider.model_patcher.get_model_object("model_sampling")
    for c in contributions(guider.model_options):
        with reported_as(c.node):           # no node is running while sampling: name the one that registered it
            c.prepare_run(tuple(noise.shape), model_sampling)
    return executor(noise, latent_image, sampler, sigmas, *args, **kwargs)
