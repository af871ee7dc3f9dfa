"""Editing API-format workflows (the shipped ones, changed for one test): set or drop inputs, add nodes."""
from __future__ import annotations


def edit(wf: dict, node: str, drop: tuple[str, ...] = (), **inputs) -> dict:
    """Remove the `drop` inputs of a node and set others (values or [node_id, output] links)."""
    for name in drop:
        del wf[node]["inputs"][name]
    wf[node]["inputs"].update(inputs)
    return wf


def add(wf: dict, node: str, class_type: str, **inputs) -> dict:
    wf[node] = {"class_type": class_type, "inputs": inputs}
    return wf


def ipadapter_from_embeds_file(wf: dict, embeds_file: str) -> dict:
    """The shipped ip_adapter workflow with its image encoding (CLIP vision, Load Image, Infuse Encode Image: nodes
    2, 3, 12) replaced by Infuse Load Image Embeds (node 20): no image encoder runs, which matters on a CPU (a ViT-H
    takes ~20 s per image there)."""
    del wf["2"], wf["3"], wf["12"]
    add(wf, "20", "InfuseLoadImageEmbeds", embeds_file=embeds_file)
    return edit(wf, "5", image_embeds=["20", 0])


def ipadapter_encoding_inline(wf: dict) -> dict:
    """The shipped ip_adapter workflow with Infuse IP-Adapter (node 5) encoding its image itself: Infuse Encode
    Image (node 12) removed, its image and clip_vision links moved to node 5."""
    encoder = wf.pop("12")["inputs"]
    return edit(wf, "5", drop=("image_embeds",), image=encoder["image"], clip_vision=encoder["clip_vision"])
