"""Custom socket types of the pack."""
from comfy_api.latest import io

IPAdapterType = io.Custom("INFUSE_IPADAPTER")        # mechanisms.decoupled_attention.adapter.IPAdapterModel
OpenClipType = io.Custom("INFUSE_CLIP_VISION")       # extractors.clip_vision.OpenClipVision
ImageEmbedsType = io.Custom("IMAGE_EMBEDS")          # extractors.features.ImageEmbeds
FaceEmbedsType = io.Custom("FACE_EMBEDS")            # extractors.features.FaceEmbeds
GarmentUNetType = io.Custom("INFUSE_GARMENT_UNET")   # ModelPatcher of IDM-VTON's garment UNet
PulidType = io.Custom("INFUSE_PULID")               # mechanisms.recipes.pulid.PulidBundle
PhotoMakerType = io.Custom("INFUSE_PHOTOMAKER")     # mechanisms.loaders.photomaker_file.PhotoMakerModel
