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


def flux_text_for_tests(wf: dict, seed: int = 1, tokens: int = 8) -> dict:
    """An API workflow with each CLIP Text Encode fed by a Dual CLIP Loader (the shipped Flux workflows' text
    encoding: clip_l + t5xxl_fp16) replaced by the e2e server's TestFluxText node under the same id, so every link to
    it stays, and the Dual CLIP Loader removed: no T5-XXL can be written small (ComfyUI builds its fixed 24-layer
    config), see tests/e2e/server_plugins/infuse_test_flux_text.py. Other workflows come back unchanged."""
    loaders = {k for k, n in wf.items() if n["class_type"] == "DualCLIPLoader"}
    for node_id, node in list(wf.items()):
        if node["class_type"] == "CLIPTextEncode" and node["inputs"].get("clip", [None])[0] in loaders:
            add(wf, node_id, "TestFluxText", seed=seed, tokens=tokens)
    for node_id in loaders:
        del wf[node_id]
    return wf
