"""Face nodes: insightface analysis -> FACE_EMBEDS, keypoint images, aligned crops."""
import folder_paths
import torch
from comfy_api.latest import io

from ..extractors.clip_vision import as_rgb
from ..extractors.face import SELECTIONS, analyze, cached_analyzer, pack_names
from ..extractors.keypoints import aligned_crops, keypoints_images
from .types import FaceEmbedsType

ANALYSIS = "Infuse Face Analysis"


class InfuseFaceAnalysis(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseFaceAnalysis", display_name=ANALYSIS, category="infuse/extract",
            description="insightface detection + recognition on each image: the selected face's 512-d embedding "
                        "(raw and normalised), box, 5 keypoints. Outputs previews of the keypoints and the aligned "
                        "face crops (the CLIP input of FaceID-Plus).",
            inputs=[
                io.Image.Input("image", tooltip="One or more images; one face is taken from each."),
                io.Combo.Input("model_pack", options=pack_names(folder_paths.get_folder_paths("insightface")),
                               tooltip="Folder under models/insightface/models/ (antelopev2 for InstantID)."),
                io.Int.Input("det_size", default=640, min=128, max=2048, step=32,
                             tooltip="Detector input size; larger finds smaller faces."),
                io.Combo.Input("selection", options=list(SELECTIONS), default="largest",
                               tooltip="Which face when there are several: the largest, or by index "
                                       "left-to-right / by size."),
                io.Int.Input("face_index", default=0, min=0, max=63, tooltip="Index for the index selections."),
                io.Int.Input("crop_size", default=224, min=112, max=1024, step=16,
                             tooltip="Side of the aligned face crops."),
            ],
            outputs=[FaceEmbedsType.Output("face_embeds", tooltip="The selected face of every image."),
                     io.Image.Output("keypoints", tooltip="InstantID keypoint images at each image's size."),
                     io.Image.Output("face_crops", tooltip="5-point aligned face crops.")],
        )

    @classmethod
    def execute(cls, image, model_pack, det_size, selection, face_index, crop_size) -> io.NodeOutput:
        analyzer = cached_analyzer(model_pack, folder_paths.get_folder_paths("insightface"), ANALYSIS, det_size)
        faces = analyze(analyzer, image, ANALYSIS, selection, face_index)
        hw = tuple(image.shape[1:3])
        kps = keypoints_images(faces.kps, hw, hw)
        crops = aligned_crops(as_rgb(image, ANALYSIS), faces.kps, crop_size)
        return io.NodeOutput(faces, kps, crops)


class InfuseFaceKeypoints(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseFaceKeypoints", display_name="Infuse Face Keypoints", category="infuse/extract",
            description="Draws IdentityNet's condition image (InstantID's convention) for faces at a given size, "
                        "e.g. from a separate pose image's Face Analysis.",
            inputs=[FaceEmbedsType.Input("face_embeds", tooltip="Faces whose keypoints to draw."),
                    io.Int.Input("width", default=1024, min=64, max=8192, step=8, tooltip="Output width."),
                    io.Int.Input("height", default=1024, min=64, max=8192, step=8, tooltip="Output height.")],
            outputs=[io.Image.Output("keypoints", tooltip="The keypoint images.")],
        )

    @classmethod
    def execute(cls, face_embeds, width, height) -> io.NodeOutput:
        images = []
        for i in range(len(face_embeds)):
            src = tuple(int(v) for v in face_embeds.image_hw[i].tolist()) if face_embeds.image_hw[i].min() > 0 \
                else (height, width)
            images.append(keypoints_images(face_embeds.kps[i:i + 1], src, (height, width)))
        return io.NodeOutput(torch.cat(images))
