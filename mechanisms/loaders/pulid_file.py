"""PuLID files read into a PulidModel, recognised from keys and shapes (ToTheBeginning/PuLID loads each file by
splitting keys on their first segment, strictly):

- SDXL v1 `pulid_v1.bin`: `id_adapter.*` (IDEncoder) + `id_adapter_attn_layers.{1,3,...,139}.id_to_{k,v}.weight`;
- SDXL v1.1 `pulid_v1.1.safetensors`: the same with an IDFormer under `id_adapter.*`;
- cubiq's conversion `ip-adapter_pulid_sdxl_fp16.safetensors`: `image_proj.*` + `ip_adapter.{n}.to_{k,v}_ip.weight`;
- Flux `pulid_flux_v0.9.0/1.safetensors`: `pulid_encoder.*` (IDFormer) + `pulid_ca.{0..19}.*`.
"""
from __future__ import annotations

import os
import re

from ...core.errors import InfuseError
from ...core.files import load_weights
from ..decoupled_attention.pulid_encoders import encoder_from_state_dict
from ..decoupled_attention.pulid_flux import PerceiverAttentionCA
from ..decoupled_attention.pulid_model import PulidModel

SDXL_LAYERS = 70
LAYOUTS = {   # encoder prefix -> (layers prefix, per-layer key pattern)
    "id_adapter.": ("id_adapter_attn_layers.", re.compile(r"(\d+)\.id_to_(k|v)\.weight")),
    "image_proj.": ("ip_adapter.", re.compile(r"(\d+)\.to_(k|v)_ip\.weight")),
}


def _under(data: dict, prefix: str) -> dict:
    if isinstance(data.get(prefix[:-1]), dict):           # a .bin of nested dicts
        return dict(data[prefix[:-1]])
    return {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}


def is_pulid_encoder(sd: dict) -> bool:
    """PuLID's encoders (both versions) have mapping_{0..4}; IP-Adapter projections never do."""
    return any(k.startswith(("mapping_", "body.", "id_embedding_mapping.")) for k in sd)


def parse_pulid(data: dict, name: str, input_name: str = "pulid_file") -> PulidModel:
    def bad(what: str) -> InfuseError:
        return InfuseError(f"'{name}' {what}.", "choose a PuLID file (pulid_v1.bin, pulid_v1.1.safetensors, "
                                                "pulid_flux_v0.9.1.safetensors); see the README.", input_name=input_name)

    flux = _under(data, "pulid_encoder.")
    if flux:
        kind, encoder = _encoder(flux, name, input_name, bad)
        ca = _under(data, "pulid_ca.")
        numbers = sorted({int(k.split(".")[0]) for k in ca})
        if not numbers or numbers != list(range(len(numbers))):
            raise bad(f"has {len(numbers)} ID layers (pulid_ca), numbered {numbers[:4]}...")
        layers = [PerceiverAttentionCA.from_state_dict({k.split(".", 1)[1]: v for k, v in ca.items()
                                                        if k.split(".")[0] == str(i)}) for i in numbers]
        return PulidModel(name, "flux", "flux", encoder, ca_layers=layers)
    for prefix, (layers_prefix, pattern) in LAYOUTS.items():
        enc_sd = _under(data, prefix)
        if not enc_sd or not is_pulid_encoder(enc_sd):
            continue
        kind, encoder = _encoder(enc_sd, name, input_name, bad)
        parts: dict[int, dict] = {}
        for k, v in _under(data, layers_prefix).items():
            if m := pattern.fullmatch(k):
                parts.setdefault(int(m.group(1)), {})[m.group(2)] = v
        numbers = sorted(parts)
        if len(numbers) != SDXL_LAYERS or numbers != list(range(1, 2 * SDXL_LAYERS, 2)):
            raise bad(f"has {len(numbers)} ID attention layers; PuLID SDXL files have {SDXL_LAYERS} "
                      "(at odd indices 1, 3, ...)")
        kv = {n // 2: (parts[n]["k"], parts[n]["v"]) for n in numbers}
        return PulidModel(name, "sdxl", "v1" if kind == "IDEncoder" else "v1.1", encoder, kv=kv)
    raise bad("is not a PuLID file (no id_adapter / pulid_encoder / PuLID image_proj weights)")


def _encoder(sd: dict, name: str, input_name: str, bad):
    try:
        return encoder_from_state_dict(sd)
    except ValueError as e:
        raise InfuseError(f"'{name}' is not a complete PuLID file: {e}.",
                          "use the file as published, unconverted (guozinan/PuLID: pulid_v1.bin, "
                          "pulid_v1.1.safetensors, pulid_flux_v0.9.1.safetensors); a converted or merged copy must "
                          "keep every key of one version.", input_name=input_name) from None
    except RuntimeError as e:
        raise bad(f"has an ID encoder this pack does not know ({str(e).splitlines()[0]})") from e


def load_pulid(path: str, input_name: str = "pulid_file") -> PulidModel:
    return parse_pulid(load_weights(path, input_name), os.path.basename(path), input_name)
