"""Face nodes: insightface analysis -> FACE_EMBEDS, keypoint images, aligned crops."""
import folder_paths
import torch
from comfy_api.latest import io

from ..core.errors import InfuseError
from ..extractors.clip_vision import as_rgb
from ..extractors.face import NO_FACE, SELECTIONS, analyze, cached_analyzer, pack_names, skip_missing
from ..extractors.face_similarity import NO_FACE as NO_FACE_SCORE
from ..extractors.face_similarity import annotated, report, similarities
from ..extractors.keypoints import aligned_crops, keypoints_images
from .base import InfuseNode
from .presentation import preview_images, with_note, with_progress
from .types import FaceEmbedsType

ANALYSIS = "Infuse Face Analysis"


class InfuseFaceAnalysis(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseFaceAnalysis", display_name=ANALYSIS, category="infuse/extract",
            description="Finds the faces in each image with insightface and keeps one per image: its identity "
                        "embedding, box and 5 keypoints. Connect face_embeds to the InstantID nodes or a FaceID "
                        "IP-Adapter; the selected faces are previewed on the node.",
            inputs=[
                io.Image.Input("image", tooltip="Photo(s) with a face; one face is taken from each image (see "
                                                "selection), so a batch gives one face per image."),
                io.Combo.Input("model_pack", options=pack_names(folder_paths.get_folder_paths("insightface")),
                               tooltip="The insightface models, a folder under models/insightface/models/: "
                                       "antelopev2 for InstantID, buffalo_l for the IP-Adapter FaceID files."),
                io.Int.Input("det_size", default=640, min=128, max=2048, step=32,
                             tooltip="Face detector input size in pixels, 128 to 2048 (640 = insightface's "
                                     "default). Larger finds smaller faces but is slower; smaller may miss them."),
                io.Combo.Input("selection", options=list(SELECTIONS), default="largest",
                               tooltip="Which face when an image has several: largest; left-to-right = number "
                                       "face_index counted from the left; index = number face_index counted from "
                                       "the largest."),
                io.Int.Input("face_index", default=0, min=0, max=63,
                             tooltip="Which face for the left-to-right and index selections, from 0 (the leftmost, "
                                     "or the largest). Ignored by 'largest'."),
                io.Int.Input("crop_size", default=224, min=112, max=1024, step=16,
                             tooltip="Side in pixels of the aligned face crops, 112 to 1024 (224 = CLIP's input "
                                     "size). Changes only face_crops."),
                io.Combo.Input("no_face", options=list(NO_FACE), default="error", optional=True,
                               tooltip="When an image has no face: error = stop (default); skip = leave that image "
                                       "out of every output; pass_through = keep it as an empty entry (black "
                                       "keypoints and crop) that the identity nodes downstream leave out, acting as "
                                       "weight 0 when no image had a face. The node lists such images."),
            ],
            outputs=[FaceEmbedsType.Output("face_embeds", display_name="face_embeds",
                                           tooltip="The selected face of every image (identity "
                                                   "embedding, box, keypoints): connect to the InstantID "
                                                   "nodes or face_embeds on Infuse IP-Adapter."),
                     io.Image.Output("keypoints", display_name="keypoints",
                                     tooltip="Each face's 5 keypoints drawn in InstantID's colours at "
                                             "its image's size: IdentityNet's condition image."),
                     io.Image.Output("face_crops", display_name="face_crops",
                                     tooltip="The selected faces, rotated and scaled upright (5-point "
                                             "alignment): the image input of FaceID-Plus adapters.")],
        )

    @classmethod
    def execute(cls, image, model_pack, det_size, selection, face_index, crop_size, no_face="error") -> io.NodeOutput:
        analyzer = cached_analyzer(model_pack, folder_paths.get_folder_paths("insightface"), det_size)
        image = as_rgb(image)
        faces = analyze(analyzer, image, selection, face_index, no_face)
        note = None
        if faces.missing:
            numbers = ", ".join(str(i + 1) for i in faces.missing)
            note = f"No face in image(s) {numbers}: " + ("left out." if no_face == "skip" else "passed through.")
        if no_face == "skip":
            faces, image = skip_missing(faces, image)
        hw = tuple(image.shape[1:3])
        kps = keypoints_images(faces.kps, hw, hw) * faces.found[:, None, None, None]
        crops = torch.zeros(len(faces), crop_size, crop_size, 3)          # black where there is no face
        if faces.found.any():
            crops[faces.found] = aligned_crops(image[faces.found], faces.kps[faces.found], crop_size)
        return io.NodeOutput(faces, kps, crops, ui=with_note(preview_images(cls, crops), note))


class InfuseFaceKeypoints(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseFaceKeypoints", display_name="Infuse Face Keypoints", category="infuse/extract",
            description="Draws IdentityNet's condition image (InstantID's keypoint convention) for faces at a given "
                        "size, e.g. a separate pose image's face from Infuse Face Analysis. Connect it to keypoints "
                        "on Infuse InstantID or Infuse IdentityNet; the drawing is previewed on the node.",
            inputs=[FaceEmbedsType.Input("face_embeds", tooltip="The faces whose keypoints to draw, e.g. Infuse Face "
                                                                "Analysis of a pose image: the generated face takes "
                                                                "their place and angle."),
                    io.Int.Input("width", default=1024, min=64, max=8192, step=8,
                                 tooltip="Width of the keypoint image in pixels; use the generated image's width "
                                         "(the keypoints are scaled to it)."),
                    io.Int.Input("height", default=1024, min=64, max=8192, step=8,
                                 tooltip="Height of the keypoint image in pixels; use the generated image's height.")],
            outputs=[io.Image.Output("keypoints", display_name="keypoints",
                                     tooltip="One keypoint image per face (InstantID's colours on "
                                             "black): connect to keypoints on Infuse InstantID or "
                                             "IdentityNet.")],
        )

    @classmethod
    def execute(cls, face_embeds, width, height) -> io.NodeOutput:
        images = []
        for i in with_progress(range(len(face_embeds))):
            src = tuple(int(v) for v in face_embeds.image_hw[i].tolist()) if face_embeds.image_hw[i].min() > 0 \
                else (height, width)
            drawn = keypoints_images(face_embeds.kps[i:i + 1], src, (height, width))
            images.append(drawn if face_embeds.found[i] else torch.zeros_like(drawn))   # no face: nothing drawn
        images = torch.cat(images)
        return io.NodeOutput(images, ui=preview_images(cls, images))


class InfuseFaceSimilarity(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseFaceSimilarity", display_name="Infuse Face Similarity", category="infuse/inspect",
            is_output_node=True,
            description="How close each generated face is to the reference identity: the cosine similarity of "
                        "their ArcFace embeddings (PuLID's identity loss as a metric), from the same insightface "
                        "pack that analysed the reference. Works for any identity method (InstantID, FaceID, "
                        "PuLID, PhotoMaker). Scores and boxes are shown on the node.",
            inputs=[
                FaceEmbedsType.Input("reference_faces",
                                     tooltip="The reference identity from Infuse Face Analysis (several faces: "
                                             "their mean identity). Its insightface pack is used for the images."),
                io.Image.Input("images", tooltip="The generated images to score; one face is taken from each."),
                io.Int.Input("det_size", default=640, min=128, max=2048, step=32,
                             tooltip="Face detector input size for the images, 128 to 2048 (as on Face "
                                     "Analysis)."),
                io.Combo.Input("selection", options=list(SELECTIONS), default="largest",
                               tooltip="Which face of an image with several: largest, or see Face Analysis."),
            ],
            outputs=[io.Float.Output("similarity", display_name="similarity", is_output_list=True,
                                     tooltip=f"One cosine similarity per image, -1 to 1 (higher = closer; "
                                             f"{NO_FACE_SCORE:g} where the image has no face)."),
                     io.String.Output("report", display_name="report",
                                      tooltip="The scores as text, one line per image, and their mean."),
                     io.Image.Output("annotated", display_name="annotated",
                                     tooltip="The images with each scored face's box and score drawn.")],
        )

    @classmethod
    def execute(cls, reference_faces, images, det_size, selection) -> io.NodeOutput:
        try:
            analyzer = cached_analyzer(reference_faces.model, folder_paths.get_folder_paths("insightface"), det_size)
        except InfuseError as e:      # the pack is the reference's: say so, on the input it came through
            raise InfuseError(f"the reference faces were analysed with '{reference_faces.model}', and {e.problem}",
                              e.fix, "reference_faces") from None
        images = as_rgb(images, "images")
        faces = analyze(analyzer, images, selection, 0, "pass_through")
        scores = similarities(reference_faces, faces)
        text = report(scores)
        drawn = annotated(images, faces, scores)
        note = None
        if faces.missing:
            note = f"No face in image(s) {', '.join(str(i + 1) for i in faces.missing)}: scored {NO_FACE_SCORE:g}."
        shown = {**preview_images(cls, drawn).as_dict(), "text": [text] + ([note] if note else [])}
        return io.NodeOutput(scores, text, drawn, ui=shown)
