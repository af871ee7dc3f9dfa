"""The DiT-block surface of the one dispatcher: Flux double / single blocks through patches_replace["dit"].

ComfyUI's Flux (comfy/ldm/flux/model.py) calls a replace patch at ("double_block", i) / ("single_block", i) as
`patch({"img", "txt", "vec", "pe", "attn_mask", "transformer_options"}, {"original_block": f})` and takes
`out["img"]` (and `out["txt"]` in double blocks); single blocks get `img = cat(txt, img)`. Infuse installs one
`BlockDispatcher` per block and runs every registered `BlockContribution`:

    img_out = base(args)["img"] + sum_i  weight_i * site_weight_i * mask_i * block_delta_i(...)

on the image tokens only (in single blocks the slice after the text tokens; text tokens stay bit-identical).
Base is the original block, or a "dit" patch another pack installed at that key first (kept and called with
the same args). A patch another pack installs at the key *after* Infuse replaces the dispatcher in the model's
options; the DIFFUSION_MODEL wrapper then hands the blocks, for that call only, a dispatcher that keeps it as the
base and runs every contribution registered there (the registry in transformer_options), as the UNet surface
does (foreign.py). Nothing is dropped and nothing is written back.

The Gate (weight, per-site weight, sigma range, CFG branch, mask) is Contribution's: a contribution whose gate is
zero at a block is never computed there. Schedules are bound once per run by the dispatcher's OUTER_SAMPLE
wrapper, for every surface alike. Masks are resized to the token grid the same DIFFUSION_MODEL wrapper records
once per model call (dit_call.token_layout).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from ....core.errors import InfuseError
from .. import dispatcher
from ..contribution import active_contributions, rows_of
from ..gate import mask_to_tokens
from .dit_attention import add_rows, with_block_attention
from .dit_call import LAYOUT_KEY, BlockCall, BlockState, split_tokens, token_layout
from .unet import comfy_model_type

DIT = "dit"
BLOCK_KINDS = ("double_block", "single_block")
CALL_WRAPPER_KEY = "infuse.dit.call"          # DIFFUSION_MODEL wrapper: token layout, foreign patches rebound
BlockKey = tuple[str, int]


@dataclass(frozen=True)
class BlockSite:
    kind: str            # "double_block" | "single_block"
    index: int
    hidden_size: int
    heads: int

    @property
    def key(self) -> BlockKey:
        return (self.kind, self.index)

    @property
    def path(self) -> str:
        return f"{self.kind}s.{self.index}"

    def __str__(self) -> str:
        return f"{self.kind}:{self.index}"


def discover_blocks(diffusion_model) -> list[BlockSite]:
    """Every block of a Flux-style DiT, double blocks then single blocks: diffusers' order (transformer_blocks,
    then single_transformer_blocks), by which Flux adapter files index their per-block layers."""
    return [BlockSite(kind, i, b.hidden_size, b.num_heads)
            for kind, blocks in (("double_block", diffusion_model.double_blocks),
                                 ("single_block", diffusion_model.single_blocks))
            for i, b in enumerate(blocks)]


def is_flux(model) -> bool:
    """Whether a ModelPatcher holds a Flux-style DiT (Flux dev / schnell, their fine-tunes, Kontext)."""
    from comfy.ldm.flux.model import Flux

    return isinstance(getattr(getattr(model, "model", None), "diffusion_model", None), Flux)


def block_sites(model) -> list[BlockSite]:
    """The DiT blocks of a ModelPatcher holding a Flux model; anything else is an error naming the node."""
    from comfy.ldm.flux.model import Flux

    diffusion_model = getattr(getattr(model, "model", None), "diffusion_model", None)
    if not isinstance(diffusion_model, Flux):
        raise InfuseError(f"the model is a {comfy_model_type(model)} model; this node patches the DiT blocks "
                          "of Flux models only.",
                          "connect a Flux model (Load Diffusion Model, or a Flux checkpoint) to this node.",
                          input_name="model")
    return discover_blocks(diffusion_model)


class BlockContribution(dispatcher.Contribution):
    """One mechanism's change to DiT blocks; subclasses implement `block_delta`.

    `block_delta(block_input, block_output, call)` returns the unweighted addition to the image tokens,
    `[rows, N_img, D]`, for the rows it is given (`call.chunks` says cond / uncond). Both dicts hold "img" and
    "txt" apart in either block kind; `call.image_query()` and friends compute inner values lazily.
    """

    kind = DIT
    acts_in_attention = False    # True: `attention_delta` is added to the block's attention output instead
    reads_query = False          # True: reads the block's query (call.image_query / joint_query): kept from its
                                 # attention instead of projected again

    def block_delta(self, block_input: dict, block_output: dict, call: BlockCall) -> torch.Tensor:
        raise NotImplementedError

    def attention_delta(self, call: BlockCall) -> torch.Tensor:
        """For contributions that act in attention: the unweighted addition to the block's attention output
        [rows, N, heads * head_dim], N = the image tokens in a double block, text then image tokens in a single
        block (all of them attend there). The block's projection, gate and MLP then see it."""
        raise NotImplementedError

    def delta(self, q, k, v, call):
        raise TypeError("a BlockContribution acts on DiT blocks (block_delta), not on attention sites")

    def token_mask(self, call: BlockCall, like: torch.Tensor) -> torch.Tensor:
        """The mask on the image tokens, [rows, N_img, 1]; image tokens beyond the latent's grid (reference
        latents appended by Kontext-style conditioning) are outside every mask."""
        key = (call.n_img, call.latent_hw, call.chunk_size, len(call.chunks), like.device, like.dtype)
        cached = self._token_masks.get(key)
        if cached is None:
            mode = getattr(self, "mask_mode", None)       # hooks' mask modes, where the Contribution has them
            grid = call.grid_hw
            tokens = mask_to_tokens(self.mask, grid[0] * grid[1], call.latent_hw,   # [Bm, h*w, 1]
                                    *((mode,) if mode else ()))
            extra = call.n_img - tokens.shape[1]
            if extra > 0:
                tokens = torch.cat([tokens, tokens.new_zeros(tokens.shape[0], extra, 1)], dim=1)
            per_chunk = torch.arange(call.chunk_size) % tokens.shape[0]
            cached = tokens[per_chunk.repeat(len(call.chunks))].to(like.device, like.dtype)
            self._token_masks[key] = cached
        return cached


def _is_dispatcher(patch) -> bool:
    return getattr(patch, "_infuse_block_dispatcher", False) is True


class BlockDispatcher:
    """The Infuse replace patch at one DiT block. Immutable: adding a contribution builds a new one."""

    _infuse_block_dispatcher = True   # recognised across module reloads, where isinstance would fail

    def __init__(self, site: BlockKey, base=None, contributions: tuple[BlockContribution, ...] = ()):
        self.site = tuple(site)
        self.base = base                  # a "dit" patch another pack installed here first, or None
        self.contributions = tuple(contributions)

    def with_contribution(self, contribution: BlockContribution) -> "BlockDispatcher":
        return BlockDispatcher(self.site, self.base, self.contributions + (contribution,))

    def with_base(self, base) -> "BlockDispatcher":
        return BlockDispatcher(self.site, base, self.contributions)

    def _run_base(self, args: dict, extra: dict) -> dict:
        if self.base is not None:
            return self.base(args, extra)
        return extra["original_block"](args)

    def _plan(self, options: dict, cond_or_uncond: list) -> list[tuple[BlockContribution, float, list[int]]]:
        """The contributions active in this call: (contribution, weight here, chunks it applies to)."""
        return active_contributions(self.contributions, self.site, options, cond_or_uncond)

    def __call__(self, args: dict, extra: dict) -> dict:
        options = args.get("transformer_options") or {}
        cond_or_uncond = options.get("cond_or_uncond") or [0]
        plan = self._plan(options, cond_or_uncond) if self.contributions else ()
        if not plan:
            return self._run_base(args, extra)
        layout = options.get(LAYOUT_KEY)
        if layout is None:
            raise RuntimeError("Infuse's DiT dispatcher ran without its DIFFUSION_MODEL wrapper (token layout); "
                               "install contributions with add_block_contribution")
        kind, index = self.site
        n_txt = args["txt"].shape[1] if kind == "double_block" else layout.n_txt
        state = BlockState(kind, index, layout, split_tokens(args, kind, n_txt, snapshot=True))
        chunk = args["img"].shape[0] // len(cond_or_uncond)
        calls = []
        for c, weight, picked in plan:
            rows = None if len(picked) == len(cond_or_uncond) else rows_of(picked, chunk, args["img"].device)
            calls.append((c, weight, rows, BlockCall(state, rows, tuple(cond_or_uncond[i] for i in picked), chunk)))
        inside = [x for x in calls if x[0].acts_in_attention]
        # a foreign base gets the override only where a contribution must act inside the attention; a query read
        # under a foreign base is projected instead, so that patch sees the block args ComfyUI would give it
        if inside or (self.base is None and any(c.reads_query for c, *_ in calls)):
            args = with_block_attention(args, state, inside, n_txt if kind == "single_block" else 0)
        out = self._run_base(args, extra)
        after = [x for x in calls if not x[0].acts_in_attention]
        if not after:
            return out
        state.after = split_tokens(out, kind, n_txt, snapshot=False)

        deltas = []                       # all computed before any is added: each sees the base output
        for c, weight, rows, call in after:
            d = c.block_delta(call.input, call.output, call)
            if c.mask is not None:
                d = d * c.token_mask(call, d)
            deltas.append((d.to(out["img"].dtype), weight, rows))

        # The original block's output is its own fresh tensor (ComfyUI adds ControlNet residuals to it in place
        # too); a foreign base's output is copied first, it may keep it.
        result = out["img"] if self.base is None else out["img"].clone()
        img = result if kind == "double_block" else result[:, n_txt:]
        for d, weight, rows in deltas:
            add_rows(img, d, weight, rows)
        return {**out, "img": result}

    # --- ComfyUI's patch protocol ----------------------------------------------------------------------
    def __deepcopy__(self, memo):
        import copy

        if self.base is None:
            return self
        return self.with_base(copy.deepcopy(self.base, memo))

    def to(self, device_or_dtype):
        # Contributions are shared by clones: nothing of theirs moves here (token masks are cached per device).
        base = self.base
        if base is not None and hasattr(base, "to"):
            base = base.to(device_or_dtype)
        return self if base is self.base else self.with_base(base)


def install(model, sites: Iterable[BlockSite], contribution: BlockContribution | None = None) -> None:
    """Put (or extend) the Infuse dispatcher at each block of `model`, a ModelPatcher the caller cloned."""
    import comfy.patcher_extension

    sites = list(sites)
    if contribution is not None:
        dispatcher.register(model, contribution, (s.key for s in sites))
    for site in sites:
        current = model.model_options["transformer_options"].get("patches_replace", {}).get(DIT, {}).get(site.key)
        if _is_dispatcher(current):
            new = current if contribution is None or contribution in current.contributions \
                else current.with_contribution(contribution)
        else:   # a foreign patch (installed first, or over a dispatcher) is the base of all registered here
            new = BlockDispatcher(site.key, current, dispatcher.registered_at(model.model_options, DIT, site.key))
        model.set_model_patch_replace(new, DIT, *site.key)
    dispatcher.prepare_runs(model)
    per_call = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
    if not model.get_wrappers(per_call, CALL_WRAPPER_KEY):
        model.add_wrapper_with_key(per_call, CALL_WRAPPER_KEY, _per_call)


def add_block_contribution(model, contribution: BlockContribution, sites: Iterable[BlockSite] | None = None) -> None:
    """Register a contribution at `sites` (default: every block) of a cloned ModelPatcher holding a Flux model."""
    all_sites = block_sites(model)
    install(model, all_sites if sites is None else sites, contribution)
    dispatcher.load_with_model(model, contribution)


def rebound_blocks(transformer_options: dict) -> dict | None:
    """The "dit" replace patches with every foreign patch that replaced a dispatcher after Infuse's contributions
    were registered made the base of a dispatcher running them, for this call; None when there is none."""
    patches = (transformer_options.get("patches_replace") or {}).get(DIT)
    if not patches:
        return None
    built: dict = {}
    for c in transformer_options.get(dispatcher.REGISTRY_KEY, ()):
        if c.kind != DIT:
            continue
        for key in c.site_keys:
            if key in built:
                built[key] = built[key].with_contribution(c)
                continue
            current = patches.get(key)
            if current is not None and not _is_dispatcher(current):
                built[key] = BlockDispatcher(key, current, (c,))
    return {**patches, **built} if built else None


def _per_call(executor, x, timestep, context, *args, **kwargs):
    """DIFFUSION_MODEL wrapper of Flux.forward(x, timestep, context, y, guidance, ref_latents, control,
    transformer_options): hands the blocks a copy of transformer_options with the token layout and the rebound
    patches. Nothing is written back into the model's options."""
    in_kwargs = "transformer_options" in kwargs
    if not in_kwargs and len(args) < 5:
        return executor(x, timestep, context, *args, **kwargs)
    options = kwargs["transformer_options"] if in_kwargs else args[4]
    options = {**options, LAYOUT_KEY: token_layout(executor.class_obj, x, context)}
    blocks = rebound_blocks(options)
    if blocks is not None:
        options["patches_replace"] = {**options["patches_replace"], DIT: blocks}
    if in_kwargs:
        kwargs["transformer_options"] = options
    else:
        args = args[:4] + (options,) + args[5:]
    return executor(x, timestep, context, *args, **kwargs)


def dispatchers(model_options: dict) -> list[BlockDispatcher]:
    replace = model_options.get("transformer_options", {}).get("patches_replace", {})
    return [p for p in replace.get(DIT, {}).values() if _is_dispatcher(p)]
