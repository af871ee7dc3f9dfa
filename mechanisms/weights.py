"""Reading weight files safely: safetensors first; `.bin`/`.pt`/`.pth`/`.ckpt` only through
`torch.load(weights_only=True)`, which refuses pickles that would run code."""
from __future__ import annotations

import os
import pickle

import torch

from .errors import InfuseError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def load_weights(path: str, node: str, input_name: str) -> dict:
    """The file's contents as a dict (nested dicts kept), on the CPU; any failure names the file."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise InfuseError(node, f"'{path}' does not exist.", "choose a file that is in the model folder.",
                          input_name=input_name)
    try:
        if path.endswith((".safetensors", ".sft")):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        if path.endswith(PICKLE_SUFFIXES):
            data = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(data, dict):
                raise ValueError(f"it holds a {type(data).__name__}, not a dict of tensors")
            return data
    except pickle.UnpicklingError as e:
        raise InfuseError(node, f"'{name}' is not a plain weights file: it contains Python objects that "
                                f"would run code when loaded, so it was not loaded ({str(e).splitlines()[0]}).",
                          "use the .safetensors version of this model, or a file from its official source.",
                          input_name=input_name) from e
    except Exception as e:  # truncated or corrupt files raise many types
        raise InfuseError(node, f"'{name}' could not be read; it is truncated or not a weights file "
                                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).",
                          "download the file again and compare its size with the original.",
                          input_name=input_name) from e
    raise InfuseError(node, f"'{name}' has an unknown file type.",
                      "use a .safetensors (or .bin) file.", input_name=input_name)
