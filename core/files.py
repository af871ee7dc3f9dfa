"""Reading weight files safely: safetensors first; `.bin`/`.pt`/`.pth`/`.ckpt` only through
`torch.load(weights_only=True)`, which refuses pickles that would run code."""
from __future__ import annotations

import os
import pickle
import weakref

import torch

from .errors import InfuseError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


def _unreadable(name: str, e: Exception, input_name: str) -> InfuseError:
    return InfuseError(f"'{name}' could not be read; it is truncated or not a weights file "
                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).",
                       "download the file again and compare its size with the original.", input_name=input_name)


def _check_exists(path: str, input_name: str) -> None:
    if not os.path.isfile(path):
        raise InfuseError(f"'{path}' does not exist.", "choose a file that is in the model folder.",
                          input_name=input_name)


def safetensors_keys(path: str, input_name: str) -> list[str] | None:
    """The tensor names of a .safetensors file, read from its header only (None for other formats), so a file of
    the wrong kind is refused without reading gigabytes of weights."""
    _check_exists(path, input_name)
    if not path.endswith(SAFETENSORS_SUFFIXES):
        return None
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return list(f.keys())
    except Exception as e:  # truncated or corrupt headers raise several types
        raise _unreadable(os.path.basename(path), e, input_name) from e


_SHARED: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()


def shared_load(path: str, load):
    """`load(path)`, or the object it gave for the same unchanged file while anything (ComfyUI's node cache) still
    holds it: a loader node re-run for another of its inputs does not load a large encoder twice."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size, load.__module__, load.__qualname__)
    found = _SHARED.get(key)
    if found is None:
        found = load(path)
        _SHARED[key] = found
    return found


def load_weights(path: str, input_name: str) -> dict:
    """The file's contents as a dict (nested dicts kept), on the CPU; any failure names the file."""
    name = os.path.basename(path)
    _check_exists(path, input_name)
    if not path.endswith(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES):
        raise InfuseError(f"'{name}' has an unknown file type.", "use a .safetensors (or .bin) file.",
                          input_name=input_name)
    try:
        if path.endswith(SAFETENSORS_SUFFIXES):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise InfuseError(f"'{name}' is not a plain weights file: it contains Python objects that "
                          f"would run code when loaded, so it was not loaded ({str(e).splitlines()[0]}).",
                          "use the .safetensors version of this model, or a file from its official source.",
                          input_name=input_name) from e
    except Exception as e:  # truncated or corrupt files raise many types
        raise _unreadable(name, e, input_name) from e
    if not isinstance(data, dict):
        raise InfuseError(f"'{name}' holds a {type(data).__name__}, not a dict of named weights.",
                          "choose the model file itself (a .safetensors or .bin of named tensors).",
                          input_name=input_name)
    return data


def flat_tensors(data: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested dicts of tensors (a `.bin` of {"image_proj": {...}, "ip_adapter": {...}}) as one flat dict with dotted
    keys, the layout `.safetensors` conversions of those files use."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= flat_tensors(value, f"{prefix}{key}.")
        elif isinstance(value, torch.Tensor):
            out[f"{prefix}{key}"] = value.contiguous()
    return out


def convert_to_safetensors(path: str, input_name: str) -> str:
    """Write `<name>.safetensors` beside a `.bin` / `.pt` weights file (read with weights_only=True), its nested
    dicts flattened; an existing file is never overwritten. Returns the new path."""
    name = os.path.basename(path)
    if path.endswith(SAFETENSORS_SUFFIXES):
        raise InfuseError(f"'{name}' already is a .safetensors file.", "pick a .bin file.", input_name=input_name)
    target = os.path.splitext(path)[0] + ".safetensors"
    if os.path.exists(target):
        raise InfuseError(f"'{os.path.basename(target)}' already exists beside '{name}'; it was left as it is.",
                          "use that file, or move it away to convert again.", input_name=input_name)
    tensors = flat_tensors(load_weights(path, input_name))
    if not tensors:
        raise InfuseError(f"'{name}' holds no tensors.", "pick a model weights file.", input_name=input_name)
    from safetensors.torch import save_file

    shared = {id(t.untyped_storage()) for t in tensors.values()}
    if len(shared) < len(tensors):          # safetensors refuses tensors sharing storage: give each its own
        tensors = {k: v.clone() for k, v in tensors.items()}
    save_file(tensors, target, metadata={"converted_from": name})
    return target
