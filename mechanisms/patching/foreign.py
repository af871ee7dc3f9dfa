"""Foreign attention patches that arrive after Infuse's dispatchers: taken as the base, call by call.

Two ways another pack's replace patch can meet a site Infuse already holds, both invisible to `install`:
- installed later at the same (block, number, depth) key (core Self-Attention Guidance does this at the
  middle block), replacing the dispatcher in the model's options: Infuse's contributions at that site would
  silently stop;
- set for one call at the (block, number) key on a copy of the options (core Perturbed-Attention Guidance does
  this for its perturbed pass): ComfyUI looks up the 3-tuple key first, so the dispatcher would shadow it
  and the perturbation would silently not happen.
An APPLY_MODEL wrapper hands the model, for that call only, dispatchers that keep the foreign patch as their
base. Nothing is written back into the model's options.
"""
from __future__ import annotations

from .dispatcher import ATTENTION_KINDS, REGISTRY_KEY, SiteDispatcher, _is_dispatcher

WRAPPER_KEY = "infuse.dispatcher.foreign"


def rebound_patches(patches: dict, kind: str, registered) -> dict | None:
    """`patches` (one kind's replace patches) with foreign patches made the base of Infuse's dispatchers,
    or None when there is nothing to do."""
    new = None
    for key, patch in patches.items():
        outer = patches.get(key[:2]) if len(key) == 3 and _is_dispatcher(patch) else None
        # ComfyUI calls the (block, number) patch only where no (block, number, depth) patch was there
        if outer is not None and (patch.base is None or patch.base_outer) and outer is not patch.base \
                and not _is_dispatcher(outer):
            new = new if new is not None else dict(patches)
            new[key] = patch.with_base(outer, True)
    for c in registered:
        if c.kind != kind:
            continue
        for key in c.site_keys:
            foreign = patches.get(key)
            if foreign is None or _is_dispatcher(foreign):
                continue
            new = new if new is not None else dict(patches)
            current = new[key]
            new[key] = current.with_contribution(c) if _is_dispatcher(current) else \
                SiteDispatcher(key, kind, foreign, (c,))
    return new


def rebind(transformer_options: dict) -> dict:
    replace = transformer_options.get("patches_replace")
    if not replace:
        return transformer_options
    registered = transformer_options.get(REGISTRY_KEY, ())
    changed = {}
    for kind in ATTENTION_KINDS:
        patches = replace.get(kind)
        if patches:
            new = rebound_patches(patches, kind, registered)
            if new is not None:
                changed[kind] = new
    if not changed:
        return transformer_options
    return {**transformer_options, "patches_replace": {**replace, **changed}}


def _rebind_call(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
    return executor(x, t, c_concat, c_crossattn, control, rebind(transformer_options), **kwargs)


def install_rebinding(model) -> None:
    import comfy.patcher_extension

    kind = comfy.patcher_extension.WrappersMP.APPLY_MODEL
    if not model.get_wrappers(kind, WRAPPER_KEY):
        model.add_wrapper_with_key(kind, WRAPPER_KEY, _rebind_call)
