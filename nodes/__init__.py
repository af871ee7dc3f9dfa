"""ComfyUI nodes of the pack (V3 schema). Nodes stay thin: the work is in extractors/ and mechanisms/."""
from comfy_api.latest import ComfyExtension, io

from .convert_nodes import InfuseConvertToSafetensors
from .clip_nodes import InfuseCLIPVisionLoader, InfuseEncodeImage, InfuseLoadOpenClip
from .embeds_nodes import InfuseLoadFaceEmbeds, InfuseLoadImageEmbeds, InfuseSaveEmbeds
from .face_nodes import InfuseFaceAnalysis, InfuseFaceKeypoints, InfuseFaceSimilarity
from .inspect_model import InfuseAttentionSites
from .instantid_nodes import InfuseIdentityNet, InfuseInstantID, InfuseInstantIDAdapter, InfuseLoadInstantID
from .ipadapter_nodes import InfuseIPAdapter, InfuseIPAdapterLoader, InfuseIPAdapterSimple
from .redux_nodes import InfuseRedux
from .photomaker_nodes import InfuseLoadPhotoMaker, InfusePhotoMaker
from .pulid_nodes import InfuseLoadPuLID, InfusePuLID
from .reference_nodes import InfuseReferenceOnly
from .token_nodes import InfuseTokenReplace
from .tryon_nodes import InfuseLoadIDMVTON, InfuseTryOn, InfuseTryOnMask

NODES: list[type[io.ComfyNode]] = [
    InfuseIPAdapterLoader,
    InfuseCLIPVisionLoader,
    InfuseLoadOpenClip,
    InfuseEncodeImage,
    InfuseIPAdapter,
    InfuseIPAdapterSimple,
    InfuseFaceAnalysis,
    InfuseFaceKeypoints,
    InfuseLoadInstantID,
    InfuseInstantIDAdapter,
    InfuseIdentityNet,
    InfuseInstantID,
    InfuseReferenceOnly,
    InfuseLoadIDMVTON,
    InfuseTryOnMask,
    InfuseTryOn,
    InfuseSaveEmbeds,
    InfuseLoadImageEmbeds,
    InfuseLoadFaceEmbeds,
    InfuseAttentionSites,
    InfuseRedux,
    InfuseConvertToSafetensors,
    InfuseFaceSimilarity,
    InfuseLoadPuLID,
    InfusePuLID,
    InfuseLoadPhotoMaker,
    InfusePhotoMaker,
    InfuseTokenReplace,
]


class InfuseExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
