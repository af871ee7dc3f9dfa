"""Weight over a UNet's blocks: IP-Adapter weight types (ComfyUI_IPAdapter_plus' ramps, InstantStyle's style /
composition blocks) and per-block rules, as absolute weights per attention site."""
from __future__ import annotations

from ...core.errors import InfuseError

WEIGHT_TYPES = ("linear", "ease in", "ease out", "ease in-out", "reverse in-out", "weak input", "weak middle",
                "weak output", "strong middle", "style transfer", "composition", "style and composition",
                "strong style transfer")

# InstantStyle's blocks. SDXL: style = up_blocks.0.attentions.1, layout = down_blocks.2.attentions.1;
# SD1.5 (InstantStyle's SD1.5 script): style = up_blocks.1, layout = down_blocks.2 + mid_block.
STYLE_BLOCKS = {"sdxl": {("output", 1)}, "sd15": {("output", 3), ("output", 4), ("output", 5)}}
COMPOSITION_BLOCKS = {"sdxl": {("input", 8)}, "sd15": {("input", 7), ("input", 8), ("middle", 0)}}


def _execution_index(sites) -> dict[tuple[str, int], int]:
    """Index of each SpatialTransformer in execution order (input blocks, middle, output blocks)."""
    order = {"input": 0, "middle": 1, "output": 2}
    blocks = sorted({(s.block, s.number) for s in sites}, key=lambda b: (order[b[0]], b[1]))
    return {b: i for i, b in enumerate(blocks)}


def block_weights(sites, family: str, weight_type: str, weight: float, composition_weight: float | None = None,
                  input_name: str = "weight_type") -> dict:
    """Absolute weight per site for a weight type. Ramps follow ComfyUI_IPAdapter_plus' definitions over the
    transformer index t of L SpatialTransformers; style / composition target InstantStyle's blocks."""
    if weight_type not in WEIGHT_TYPES:
        raise InfuseError(f"unknown weight type '{weight_type}'.", f"use one of: {', '.join(WEIGHT_TYPES)}.",
                          input_name=input_name)
    wc = weight if composition_weight is None else composition_weight
    index = _execution_index(sites)
    last = len(index)
    style, composition = STYLE_BLOCKS[family], COMPOSITION_BLOCKS[family]
    out = {}
    for s in sites:
        t, b = index[(s.block, s.number)], (s.block, s.number)
        mid = last / 2
        w = {
            "linear": weight,
            "ease in": weight * (0.05 + 0.95 * (1 - t / last)),
            "ease out": weight * (0.05 + 0.95 * (t / last)),
            "ease in-out": weight * (0.05 + 0.95 * (1 - abs(t - mid) / mid)),
            "reverse in-out": weight * (0.05 + 0.95 * (abs(t - mid) / mid)),
            "weak input": weight * (0.2 if s.block == "input" else 1.0),
            "weak middle": weight * (0.2 if s.block == "middle" else 1.0),
            "weak output": weight * (0.2 if s.block == "output" else 1.0),
            "strong middle": weight * (1.0 if s.block == "middle" else 0.2),
            "style transfer": weight if b in style else 0.0,
            "composition": wc if b in composition else 0.0,
            "style and composition": weight if b in style else (wc if b in composition else 0.0),
            "strong style transfer": 0.0 if b in composition else weight,
        }[weight_type]
        out[s.key] = w
    return out


def weights_per_site(sites, family: str, weight_type: str, weight: float, composition_weight: float,
                 rules: str) -> dict:
    """Absolute weight per site: the weight type's spread times the per-block rules."""
    spread = block_weights(sites, family, weight_type, weight, composition_weight)
    factors = parse_block_weights(rules, sites)
    return {k: w * factors[k] for k, w in spread.items()}


FLUX_WEIGHT_TYPES = ("linear", "ease in", "ease out", "ease in-out", "reverse in-out")
RAMPS = {"linear": lambda t, last: 1.0,
         "ease in": lambda t, last: 0.05 + 0.95 * (1 - t / last),
         "ease out": lambda t, last: 0.05 + 0.95 * (t / last),
         "ease in-out": lambda t, last: 0.05 + 0.95 * (1 - abs(t - last / 2) / (last / 2)),
         "reverse in-out": lambda t, last: 0.05 + 0.95 * (abs(t - last / 2) / (last / 2))}


def flux_block_weights(sites, weight_type: str, weight: float, rules: str) -> dict:
    """Absolute weight per DiT block: a ramp over the blocks in execution order (double blocks, then single
    blocks; the same ramps as the UNet's) times the per-block rules ('double=0.5, single:3=0')."""
    if weight_type not in FLUX_WEIGHT_TYPES:
        raise InfuseError(f"the weight type '{weight_type}' targets SD1.5 / SDXL UNet blocks; a Flux model has "
                          "double and single blocks.",
                          f"use one of {', '.join(FLUX_WEIGHT_TYPES)} on Flux, and block_weights (e.g. 'double=1, "
                          "single=0.5') to weight double / single blocks.", input_name="weight_type")
    factors = parse_block_weights(rules, sites)
    last = len(sites)
    return {s.key: weight * RAMPS[weight_type](t, last) * factors[s.key] for t, s in enumerate(sites)}


def parse_block_weights(text: str, sites, input_name: str = "block_weights") -> dict:
    """Per-site multipliers from 'block[:number[:depth]]=value' rules, comma or newline separated; a later rule
    overrides an earlier one. UNet: 'input=0, output:1=1.2, middle:0:9=0.5'; DiT: 'double=0, single:3=1.2'."""
    factors = {s.key: 1.0 for s in sites}
    names = {k[0]: k[0] for k in factors} | {k[0].removesuffix("_block"): k[0] for k in factors}
    dit = any(k[0].endswith("_block") for k in factors)
    example = "'double=0, single:3=1.2' (blocks double / single, then the block number)" if dit else \
        "'input=0, output:1=1.2, middle:0:9=0.5' (the Infuse Attention Sites node lists the sites)"
    for rule in filter(None, (r.strip() for r in text.replace("\n", ",").split(","))):
        try:
            target, value = (part.strip() for part in rule.split("="))
            value = float(value)
            parts = target.split(":")
            block, rest = names[parts[0]], [int(p) for p in parts[1:]]
            if len(rest) > 2:
                raise ValueError
        except (ValueError, KeyError):
            raise InfuseError(f"cannot read the rule '{rule}'.",
                              f"write rules as block[:number[:depth]]=value, e.g. {example}.",
                              input_name=input_name) from None
        matched = [k for k in factors if k[0] == block and list(k[1:1 + len(rest)]) == rest]
        if not matched:
            raise InfuseError(f"the rule '{rule}' matches no {'block' if dit else 'attention site'} of this model.",
                              f"see the blocks this model has; rules look like {example}.",
                              input_name=input_name)
        for k in matched:
            factors[k] = value
    return factors
