"""Bad input in API mode: each fault is one workflow posted to a real ComfyUI server with the pack. It comes back
as ComfyUI's own validation error naming the node and input (bad values, broken links: ComfyUI checks those), or
as an execution error from the pack's InfuseError: "<node display name>, input '<name>': <problem> Fix: <what to
do>". The server keeps answering after each, and finally runs a good workflow."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import pytest
from test_server import shipped_workflow

from support import faults_files as bad
from support.server import execution_error
from support.workflow_edits import add, edit, ipadapter_encoding_inline, ipadapter_from_embeds_file

pytestmark = pytest.mark.e2e

# files this module writes into the shared model / input folders; the prefix keeps them apart from others'
CHECKPOINT_AS_ADAPTER = "fault_checkpoint.safetensors"
CLIP_VISION_AS_ADAPTER = "fault_clip_vision.safetensors"
CONTROLNET_AS_ADAPTER = "fault_controlnet.safetensors"
IPADAPTER_AS_INSTANTID = "fault_sd15_ip-adapter.safetensors"
DANGLING_LINK = "fault_moved_away.safetensors"
TRUNCATED_SAFETENSORS = "fault_truncated.safetensors"
EMPTY_FILE = "fault_empty.safetensors"
TRUNCATED_BIN = "fault_truncated.bin"
PICKLE_ZIP = "fault_runs_code.bin"
PICKLE_BARE = "fault_runs_code_bare.pt"
TENSOR_BIN = "fault_one_tensor.bin"
UNKNOWN_EXTENSION = "fault_model.pt2"
TWELVE_LAYERS = "fault_12_layers.safetensors"
VIT_B_ADAPTER = "fault_sd15_vit-b-32.safetensors"      # pooled 512: ViT-B-32's embeds
VIT_B32 = "fault_open_clip_vit_b32.safetensors"
FACEID_ADAPTER = "fault_faceid_sd15.safetensors"
SD15_CONTROLNET = "fault_sd15_controlnet.safetensors"
NOT_OPEN_CLIP = "fault_not_open_clip.safetensors"
EMPTY_PACK, BROKEN_PACK = "fault_empty_pack", "fault_broken_pack"
EMBEDS = {name: f"faults/{name}.safetensors" for name in
          ("image_embeds", "vit_l_embeds", "no_images", "face_embeds", "no_faces", "plain_tensors", "truncated")}
PNG = {mode: f"fault_{mode.lower()}.png" for mode in ("L", "RGBA")}
GRAY_FACE = "fault_gray_face.png"
HUGE_PNG = "fault_panorama_9000px.png"


@pytest.fixture(scope="module")
def fault_files(server, model_dirs, tmp_path_factory):
    """Writes the bad files; yields the marker path a code-running pickle would create."""
    from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
    from support import ipadapter_files, tiny_models

    ipa, ckpt, cn = model_dirs["ipadapter"], model_dirs["checkpoints"], model_dirs["controlnet"]
    os.link(ckpt / "tiny_sd15.safetensors", ipa / CHECKPOINT_AS_ADAPTER)
    os.link(model_dirs["clip_vision"] / "vit_h_random.safetensors", ipa / CLIP_VISION_AS_ADAPTER)
    os.link(cn / "instantid" / "diffusion_pytorch_model.safetensors", ipa / CONTROLNET_AS_ADAPTER)
    os.link(ipa / "ip-adapter_sd15.safetensors", model_dirs["instantid"] / IPADAPTER_AS_INSTANTID)
    os.symlink(tmp_path_factory.mktemp("moved") / "gone.safetensors", ipa / DANGLING_LINK)
    bad.truncated_copy(ipa / "ip-adapter_sd15.safetensors", ipa / TRUNCATED_SAFETENSORS)
    (ipa / EMPTY_FILE).write_bytes(b"")
    bad.truncated_copy(ipa / "tiny_sd15_ip-adapter-plus.bin", ipa / TRUNCATED_BIN)
    bad.tensor_only_file(ipa / TENSOR_BIN)
    (ipa / UNKNOWN_EXTENSION).write_bytes(b"\0" * 64)

    marker_dir = tmp_path_factory.mktemp("pickle_markers")
    marker = marker_dir / "pickle_ran_code"
    bad.code_running_torch_file(ipa / PICKLE_ZIP, marker)
    bad.code_running_pickle(ipa / PICKLE_BARE, marker)
    bad.code_running_torch_file(model_dirs["instantid"] / PICKLE_ZIP, marker)
    # the files are really dangerous: an unguarded torch.load runs the call (here with another marker)
    import torch

    proof = marker_dir / "proof"
    torch.load(bad.code_running_torch_file(marker_dir / "proof.bin", proof), weights_only=False)
    assert proof.exists()

    sd15 = tiny_models.MODELS["tiny_sd15"][1]["context_dim"]
    widths = [s.inner_dim for s in model_sites(tiny_models.build_model("tiny_sd15"))]
    ipadapter_files.write(ipa / TWELVE_LAYERS, ipadapter_files.image_proj("linear", cross=sd15),
                          ipadapter_files.ip_layers(widths[:12], sd15))
    ipadapter_files.write(ipa / VIT_B_ADAPTER, ipadapter_files.image_proj("linear", cross=sd15, clip_pooled=512),
                          ipadapter_files.ip_layers(widths, sd15))
    bad.open_clip_vit_b32(model_dirs["clip_vision"] / VIT_B32)
    ipadapter_files.write(ipa / FACEID_ADAPTER, ipadapter_files.image_proj("faceid", cross=sd15),
                          ipadapter_files.ip_layers(widths, sd15, lora_rank=4))
    tiny_models.write_controlnet(cn / SD15_CONTROLNET, "tiny_sd15")
    bad.plain_tensors(model_dirs["clip_vision"] / NOT_OPEN_CLIP)

    packs = model_dirs["insightface"] / "models"
    (packs / EMPTY_PACK).mkdir()
    (packs / EMPTY_PACK / "README.txt").write_text("the ONNX files were never unpacked here\n")
    (packs / BROKEN_PACK).mkdir()
    (packs / BROKEN_PACK / "scrfd_10g_bnkps.onnx").write_bytes(b"<html>404 Not Found</html>")

    inputs = server.base / "input"
    bad.embeds_file(inputs / EMBEDS["image_embeds"], bad.image_embeds())
    bad.embeds_file(inputs / EMBEDS["vit_l_embeds"], bad.image_embeds(pooled=768, hidden=1024,
                                                                      encoder="clip_vision:ViT-L-14"))
    bad.embeds_file(inputs / EMBEDS["no_images"], bad.image_embeds(n=0))
    bad.embeds_file(inputs / EMBEDS["face_embeds"], bad.face_embeds())
    bad.embeds_file(inputs / EMBEDS["no_faces"], bad.face_embeds(n=0))
    bad.plain_tensors(inputs / EMBEDS["plain_tensors"])
    bad.truncated_copy(inputs / EMBEDS["image_embeds"], inputs / EMBEDS["truncated"])
    for mode, name in PNG.items():
        bad.png(inputs / name, mode)
    bad.png(inputs / HUGE_PNG, "RGB", size=(9000, 16))
    from PIL import Image

    from support import face_models

    Image.fromarray(face_models.face_image([(9, 8)], 640, 640)).convert("L").save(inputs / GRAY_FACE)
    return marker


# --- workflows ----------------------------------------------------------------------------------------
# ip_adapter.json: 1 checkpoint, 2 CLIP vision, 3 LoadImage, 4 IP-Adapter loader, 5 Infuse IP-Adapter, 9 KSampler,
# 12 Infuse Encode Image
# instantid.json: 2 LoadImage, 3 Face Analysis, 4 InstantID loader, 5 ControlNet loader, 8 Infuse InstantID
def ipa(embeds: str = "image_embeds", **inputs) -> dict:
    """The IP-Adapter workflow fed by image embeds from a file (no image encoder runs)."""
    return ipadapter_from_embeds_file(shipped_workflow("ip_adapter", **inputs), EMBEDS[embeds])


def ipa_encoding(**inputs) -> dict:
    """The IP-Adapter workflow encoding its image with a small open-clip tower and an adapter made for it."""
    wf = ipadapter_encoding_inline(shipped_workflow("ip_adapter", **dict({"ipadapter_file": VIT_B_ADAPTER}, **inputs)))
    add(wf, "2", "InfuseLoadOpenClip", architecture="ViT-B-32", clip_name=VIT_B32)
    return edit(wf, "5", drop=("clip_vision",), open_clip=["2", 0])


def ipa_with_mask(width: int, height: int) -> dict:
    wf = add(ipa(), "21", "SolidMask", value=1.0, width=width, height=height)
    return edit(wf, "5", attn_mask=["21", 0])


def simple_ipa(**inputs) -> dict:
    """ipa() with Infuse IP-Adapter (simple) in place of the advanced node 5."""
    wf = ipa(**inputs)
    kept = ("model", "ipadapter", "image_embeds", "weight", "start_percent", "end_percent")
    wf["5"] = {"class_type": "InfuseIPAdapterSimple", "inputs": {k: wf["5"]["inputs"][k] for k in kept}}
    return wf


def reference_of_size(px: int) -> dict:
    """reference_only.json with the reference image scaled to px x px before VAE Encode (node 3)."""
    wf = add(shipped_workflow("reference_only"), "20", "ImageScale", image=["2", 0], upscale_method="nearest-exact",
             width=px, height=px, crop="disabled")
    return edit(wf, "3", pixels=["20", 0])


def rgba_tensor(wf: dict, image_node: str, consumer: str) -> dict:
    """A 4-channel IMAGE (Join Image with Alpha), not just an RGBA file that LoadImage turns into RGB."""
    add(wf, "22", "JoinImageWithAlpha", image=[image_node, 0], alpha=[image_node, 1])
    return edit(wf, consumer, image=["22", 0])


def instantid(**inputs) -> dict:
    return shipped_workflow("instantid", **inputs)


def instantid_with_face_file(embeds: str, keep_keypoints: bool = True) -> dict:
    wf = add(instantid(), "20", "InfuseLoadFaceEmbeds", embeds_file=EMBEDS[embeds])
    return edit(wf, "8", drop=() if keep_keypoints else ("keypoints",), face_embeds=["20", 0])


def face_analysis(image: str = "face.png", **inputs) -> dict:
    """LoadImage -> Infuse Face Analysis -> PreviewImage of its keypoints (nodes 2, 3, 13 of instantid.json)."""
    wf = instantid()
    wf["2"]["inputs"]["image"] = image
    wf["3"]["inputs"].update(inputs)
    return {k: wf[k] for k in ("2", "3", "13")}


def without_previews(wf: dict) -> dict:
    """Only the SaveImage branch, so one invalid node fails the whole prompt (HTTP 400)."""
    return {k: n for k, n in wf.items() if n["class_type"] != "PreviewImage"}


def embeds_as(file: str, loader: str) -> dict:
    """An embeds file read by a loader and saved again (Save Embeds is the output node that makes it run)."""
    wf = add({}, "20", loader, embeds_file=file)
    output = "face_embeds" if loader == "InfuseLoadFaceEmbeds" else "image_embeds"
    return add(wf, "21", "InfuseSaveEmbeds", filename_prefix="faults/never", **{output: ["20", 0]})


def encode_without_encoder() -> dict:
    wf = add({}, "3", "LoadImage", image="reference.png")
    add(wf, "20", "InfuseEncodeImage", image=["3", 0], crop="crop")
    return add(wf, "21", "InfuseSaveEmbeds", image_embeds=["20", 0], filename_prefix="faults/never")


def open_clip(architecture: str, clip_name: str) -> dict:
    wf = add({}, "20", "InfuseLoadOpenClip", architecture=architecture, clip_name=clip_name)
    add(wf, "3", "LoadImage", image="reference.png")
    add(wf, "21", "InfuseEncodeImage", image=["3", 0], open_clip=["20", 0], crop="crop")
    return add(wf, "22", "InfuseSaveEmbeds", image_embeds=["21", 0], filename_prefix="faults/never")


# --- faults the pack reports ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackFault:
    id: str
    workflow: Callable[[], dict]
    node: str              # display name the message starts with
    input: str
    says: str              # part of the problem text
    node_id: str | None = None     # where ComfyUI reports it, when not the node itself (checked at sampling)


LOADER, APPLY, IID = "Infuse Load IP-Adapter", "Infuse IP-Adapter", "Infuse InstantID"
LOAD_IID, FACES = "Infuse Load InstantID", "Infuse Face Analysis"
LOAD_IMAGE_EMBEDS, LOAD_FACE_EMBEDS = "Infuse Load Image Embeds", "Infuse Load Face Embeds"
PACK_FAULTS = [
    # model files: missing, of the wrong kind, damaged, dangerous
    PackFault("ipadapter_file_not_in_folder", lambda: ipa(ipadapter_file="nowhere.safetensors"),
              LOADER, "ipadapter_file", "was not found. Searched:"),
    PackFault("ipadapter_file_is_a_dangling_link", lambda: ipa(ipadapter_file=DANGLING_LINK),
              LOADER, "ipadapter_file", "was not found. Searched:"),
    PackFault("instantid_file_not_in_folder", lambda: instantid(instantid_file="nowhere.bin"),
              LOAD_IID, "instantid_file", "was not found. Searched:"),
    PackFault("checkpoint_in_ipadapter_folder", lambda: ipa(ipadapter_file=CHECKPOINT_AS_ADAPTER),
              LOADER, "ipadapter_file", "is not an IP-Adapter file"),
    PackFault("clip_vision_in_ipadapter_folder", lambda: ipa(ipadapter_file=CLIP_VISION_AS_ADAPTER),
              LOADER, "ipadapter_file", "is not an IP-Adapter file"),
    PackFault("controlnet_in_ipadapter_folder", lambda: ipa(ipadapter_file=CONTROLNET_AS_ADAPTER),
              LOADER, "ipadapter_file", "is not an IP-Adapter file"),
    PackFault("ipadapter_in_instantid_folder", lambda: instantid(instantid_file=IPADAPTER_AS_INSTANTID),
              LOAD_IID, "instantid_file", "is not an InstantID adapter"),
    PackFault("adapter_with_12_layers", lambda: ipa(ipadapter_file=TWELVE_LAYERS),
              LOADER, "ipadapter_file", "has 12 image cross-attention layers"),
    PackFault("truncated_safetensors", lambda: ipa(ipadapter_file=TRUNCATED_SAFETENSORS),
              LOADER, "ipadapter_file", "truncated"),
    PackFault("empty_file", lambda: ipa(ipadapter_file=EMPTY_FILE), LOADER, "ipadapter_file", "truncated"),
    PackFault("truncated_bin", lambda: ipa(ipadapter_file=TRUNCATED_BIN), LOADER, "ipadapter_file", "truncated"),
    PackFault("bin_holding_one_tensor", lambda: ipa(ipadapter_file=TENSOR_BIN),
              LOADER, "ipadapter_file", "holds a Tensor, not a dict"),
    PackFault("unknown_extension", lambda: ipa(ipadapter_file=UNKNOWN_EXTENSION),
              LOADER, "ipadapter_file", "unknown file type"),
    PackFault("pickle_that_runs_code_bin", lambda: ipa(ipadapter_file=PICKLE_ZIP),
              LOADER, "ipadapter_file", "would run code"),
    PackFault("bare_pickle_that_runs_code_pt", lambda: ipa(ipadapter_file=PICKLE_BARE),
              LOADER, "ipadapter_file", "would run code"),
    PackFault("pickle_that_runs_code_in_instantid", lambda: instantid(instantid_file=PICKLE_ZIP),
              LOAD_IID, "instantid_file", "would run code"),
    PackFault("open_clip_unknown_architecture", lambda: open_clip("ViT-Nope-14", NOT_OPEN_CLIP),
              "Infuse Load open-clip Vision", "architecture", "has no architecture 'ViT-Nope-14'"),
    PackFault("open_clip_weights_of_another_model", lambda: open_clip("ViT-B-32", NOT_OPEN_CLIP),
              "Infuse Load open-clip Vision", "clip_name", "does not hold a ViT-B-32 image tower"),
    PackFault("insightface_pack_not_installed", lambda: face_analysis(model_pack="buffalo_nowhere"),
              FACES, "model_pack", "no insightface model pack 'buffalo_nowhere'"),
    PackFault("insightface_pack_without_onnx_files", lambda: face_analysis(model_pack=EMPTY_PACK),
              FACES, "model_pack", f"no insightface model pack '{EMPTY_PACK}'"),
    PackFault("insightface_pack_with_a_broken_file", lambda: face_analysis(model_pack=BROKEN_PACK),
              FACES, "model_pack", "could not be loaded by onnxruntime"),
    # the other base model
    PackFault("sdxl_adapter_on_sd15", lambda: ipa(ipadapter_file="ip-adapter_sdxl_vit-h.safetensors"),
              APPLY, "ipadapter", "is an SDXL IP-Adapter but the model is SD1.5"),
    PackFault("sd15_adapter_on_sdxl", lambda: ipa(ckpt_name="tiny_sdxl.safetensors"),
              APPLY, "ipadapter", "is an SD1.5 IP-Adapter but the model is SDXL"),
    PackFault("instantid_on_sd15", lambda: instantid(ckpt_name="tiny_sd15.safetensors"),
              IID, "model", "InstantID needs an SDXL model"),
    PackFault("sd15_controlnet_as_identitynet", lambda: instantid(control_net_name=SD15_CONTROLNET),
              IID, "control_net", "not an SDXL ControlNet like IdentityNet"),
    # encoders and embeds
    PackFault("adapter_without_image", lambda: edit(ipa(), "5", drop=("image_embeds",)), APPLY, "image",
              "needs a reference image"),
    PackFault("adapter_without_clip_vision", lambda: edit(ipa_encoding(), "5", drop=("open_clip",)),
              APPLY, "clip_vision", "no CLIP image encoder is connected"),
    PackFault("encoder_of_another_width", lambda: ipa_encoding(ipadapter_file="ip-adapter_sd15.safetensors"),
              APPLY, "open_clip", "pooled embeds 512 wide, but 'ip-adapter_sd15.safetensors'"),
    PackFault("image_embeds_of_another_encoder", lambda: ipa("vit_l_embeds"), APPLY, "image_embeds",
              "pooled embeds 768 wide"),
    PackFault("faceid_file_on_the_simple_node", lambda: simple_ipa(ipadapter_file=FACEID_ADAPTER),
              "Infuse IP-Adapter (simple)", "ipadapter", "is a FaceID adapter"),
    PackFault("reference_smaller_than_the_unet_takes", lambda: reference_of_size(8), "Infuse Reference Only",
              "reference", "the reference latent is 1x1 (8x8 px)"),
    PackFault("faceid_adapter_without_face_embeds", lambda: ipa(ipadapter_file=FACEID_ADAPTER), APPLY,
              "face_embeds", "needs face embeddings"),
    PackFault("encode_image_without_encoder", encode_without_encoder, "Infuse Encode Image (CLIP)", "clip_vision",
              "no CLIP image encoder is connected"),
    PackFault("save_embeds_with_nothing_connected",
              lambda: add({}, "21", "InfuseSaveEmbeds", filename_prefix="faults/never"),
              "Infuse Save Embeds", "image_embeds", "or neither is"),
    PackFault("embeds_file_outside_input_folder",
              lambda: embeds_as("../../secret.safetensors", "InfuseLoadImageEmbeds"),
              LOAD_IMAGE_EMBEDS, "embeds_file", "is not a file in the input folder"),
    PackFault("face_embeds_file_as_image_embeds", lambda: embeds_as(EMBEDS["face_embeds"], "InfuseLoadImageEmbeds"),
              LOAD_IMAGE_EMBEDS, "embeds_file", "not a saved ImageEmbeds file"),
    PackFault("image_embeds_file_as_face_embeds", lambda: embeds_as(EMBEDS["image_embeds"], "InfuseLoadFaceEmbeds"),
              LOAD_FACE_EMBEDS, "embeds_file", "not a saved FaceEmbeds file"),
    PackFault("plain_tensors_as_embeds", lambda: embeds_as(EMBEDS["plain_tensors"], "InfuseLoadImageEmbeds"),
              LOAD_IMAGE_EMBEDS, "embeds_file", "not a saved ImageEmbeds file"),
    PackFault("truncated_embeds_file", lambda: embeds_as(EMBEDS["truncated"], "InfuseLoadImageEmbeds"),
              LOAD_IMAGE_EMBEDS, "embeds_file", "not a saved ImageEmbeds file"),
    PackFault("empty_image_embeds_batch", lambda: ipa("no_images"), LOAD_IMAGE_EMBEDS, "embeds_file",
              "holds no embeddings"),
    PackFault("empty_face_embeds_batch", lambda: instantid_with_face_file("no_faces"), LOAD_FACE_EMBEDS,
              "embeds_file", "holds no embeddings"),
    PackFault("face_embeds_without_keypoints", lambda: instantid_with_face_file("face_embeds", keep_keypoints=False),
              IID, "keypoints", "carry no keypoints"),
    # images
    PackFault("huge_image", lambda: ipa_encoding(image=HUGE_PNG), APPLY, "image", "is 9000x16"),
    PackFault("huge_image_for_face_analysis", lambda: face_analysis(HUGE_PNG), FACES, "image", "is 9000x16"),
    PackFault("image_given_as_a_file_name", lambda: edit(ipa_encoding(), "5", image="reference.png"), APPLY, "image",
              "where an IMAGE is expected"),
    PackFault("keypoints_given_as_a_file_name", lambda: edit(instantid(), "8", keypoints="face.png"), IID,
              "keypoints", "where an IMAGE is expected"),
    PackFault("face_image_with_no_face", lambda: face_analysis("no_face.png"), FACES, "image",
              "no face was found in image 1"),
    PackFault("face_index_out_of_range", lambda: face_analysis(selection="index", face_index=5), FACES, "face_index",
              "face index 5 does not exist"),
    PackFault("mask_of_another_aspect", lambda: ipa_with_mask(64, 16), APPLY, "attn_mask",
              "their aspect ratios differ", node_id="9"),
    # values ComfyUI does not check (it validates numbers' ranges, not the V3 nodes' choice lists)
    PackFault("unknown_weight_type", lambda: ipa(weight_type="stronger"), APPLY, "weight_type",
              "unknown weight type 'stronger'"),
    PackFault("unknown_combine", lambda: ipa(combine="blend"), APPLY, "combine", "got 'blend'"),
    PackFault("unknown_crop", lambda: ipa_encoding(crop="zoom"), APPLY, "crop", "got 'zoom'"),
    PackFault("unknown_face_selection", lambda: face_analysis(selection="biggest"), FACES, "selection",
              "got 'biggest'"),
    PackFault("start_after_end", lambda: ipa(start_percent=0.8, end_percent=0.2), APPLY, "start_percent",
              "is not a range of the schedule"),
    PackFault("instantid_adapter_start_after_end",
              lambda: edit(instantid(), "8", adapter_start_percent=0.9, adapter_end_percent=0.1),
              IID, "adapter_start_percent", "is not a range of the schedule"),
    PackFault("identitynet_start_after_end",
              lambda: edit(instantid(), "8", identitynet_start_percent=0.9, identitynet_end_percent=0.1),
              IID, "identitynet_start_percent", "is not a range of the schedule"),
    PackFault("block_weights_unreadable", lambda: ipa(block_weights="input=lots"), APPLY, "block_weights",
              "cannot read the rule 'input=lots'"),
    PackFault("block_weights_for_a_missing_block", lambda: ipa(block_weights="output:42=1.0"), APPLY,
              "block_weights", "matches no attention site"),
]


# --- faults ComfyUI's validation refuses (HTTP 400): node_errors name the node id and the input -------------------
@dataclass(frozen=True)
class ValidationFault:
    id: str
    workflow: Callable[[], dict]
    node_id: str
    input: str


def shipped_ipa(**inputs) -> dict:
    return shipped_workflow("ip_adapter", **inputs)


VALIDATION_FAULTS = [
    ValidationFault("checkpoint_not_in_folder", lambda: shipped_ipa(ckpt_name="nowhere.safetensors"),
                    "1", "ckpt_name"),
    ValidationFault("clip_vision_file_not_in_folder", lambda: shipped_ipa(clip_name="nowhere.safetensors"),
                    "2", "clip_name"),
    ValidationFault("non_numeric_weight", lambda: shipped_ipa(weight="heavy"), "5", "weight"),
    ValidationFault("weight_above_max", lambda: shipped_ipa(weight=99.0), "5", "weight"),
    ValidationFault("negative_start_percent", lambda: shipped_ipa(start_percent=-0.5), "5", "start_percent"),
    ValidationFault("end_percent_above_one", lambda: shipped_ipa(end_percent=1.5), "5", "end_percent"),
    ValidationFault("non_numeric_instantid_weight",
                    lambda: without_previews(edit(instantid(), "8", adapter_weight="strong")), "8", "adapter_weight"),
    ValidationFault("det_size_below_min", lambda: face_analysis(det_size=64), "3", "det_size"),
    ValidationFault("negative_face_index", lambda: face_analysis(face_index=-1), "3", "face_index"),
    ValidationFault("missing_link", lambda: edit(shipped_ipa(), "5", model=["99", 0]), "5", "model"),
    ValidationFault("link_of_the_wrong_type", lambda: edit(shipped_ipa(), "5", image=["1", 0]), "5", "image"),
    ValidationFault("required_input_missing", lambda: edit(shipped_ipa(), "5", drop=("ipadapter",)),
                    "5", "ipadapter"),
]

# --- odd inputs that must work: LoadImage makes RGB of grayscale / RGBA files, the pack drops a 4th channel ------
TOLERATED = {
    "grayscale_png": lambda: ipa_encoding(image=PNG["L"]),
    "rgba_png": lambda: ipa_encoding(image=PNG["RGBA"]),
    "rgba_image_tensor": lambda: rgba_tensor(ipa_encoding(image=PNG["RGBA"]), "3", "5"),
    "grayscale_face_photo": lambda: face_analysis(GRAY_FACE),
    "rgba_image_tensor_for_face_analysis": lambda: rgba_tensor(face_analysis(), "2", "3"),
}


def grouped_by_checkpoint(faults: list) -> list:
    """The faults in runs that load the same checkpoint (order kept within a run): ComfyUI keeps only outputs the
    current prompt uses, so alternating SD1.5 and SDXL workflows would reload both each time."""
    def checkpoint(fault) -> str:
        return next((n["inputs"]["ckpt_name"] for n in fault.workflow().values()
                     if n["class_type"] == "CheckpointLoaderSimple"), "")
    return sorted(faults, key=checkpoint)


def test_there_are_enough_faults():
    assert len(PACK_FAULTS) + len(VALIDATION_FAULTS) >= 30
    ids = [f.id for f in PACK_FAULTS + VALIDATION_FAULTS] + list(TOLERATED)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("fault", grouped_by_checkpoint(PACK_FAULTS), ids=lambda f: f.id)
def test_pack_names_node_input_and_fix(server, fault_files, fault):
    entry = server.run(fault.workflow(), timeout=120)
    error = execution_error(entry)
    assert error is not None, f"{fault.id} ran: {entry['status']}"
    message = error["exception_message"]
    assert error["exception_type"].endswith("InfuseError"), (error["exception_type"], message)
    assert message.startswith(f"{fault.node}, input '{fault.input}': "), message
    assert fault.says in message and " Fix: " in message, message
    if fault.node_id is not None:
        assert error["node_id"] == fault.node_id
    assert not fault_files.exists(), "a pickle ran code while being loaded"
    assert server.alive()


@pytest.mark.parametrize("fault", VALIDATION_FAULTS, ids=lambda f: f.id)
def test_validation_names_node_and_input(server, fault_files, fault):
    status, body = server.queue(fault.workflow())
    assert status == 400 and body["error"]["type"] == "prompt_outputs_failed_validation", body
    errors = body["node_errors"][fault.node_id]["errors"]
    assert any(e.get("extra_info", {}).get("input_name") == fault.input for e in errors), errors
    assert server.alive()


@pytest.mark.parametrize("name", list(TOLERATED))
def test_odd_but_valid_images_work(server, fault_files, name):
    entry = server.run(TOLERATED[name]())
    assert entry["status"]["status_str"] == "success", execution_error(entry) or entry["status"]


def test_server_runs_a_good_workflow_after_all_faults(server, fault_files):
    entry = server.run(ipa(seed=1234))
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = server.saved_images(entry)
    assert images and images[0].stat().st_size > 0
