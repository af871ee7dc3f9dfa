"""Test-only custom node file for the e2e server: "Test Flux Text" (TestFluxText), a seeded random Flux CONDITIONING
in place of the shipped Flux workflows' text encoding.

Why: those workflows encode their prompt with DualCLIPLoader (clip_l + t5xxl_fp16, type flux) and CLIP Text Encode.
No T5-XXL can be written small: whatever the file holds, ComfyUI builds T5-XXL's fixed config (24 layers of 4096,
~4.7 B parameters), far too large to write and run in a test. So the e2e tests replace those two nodes by this one
(tests/support/workflow_edits.py flux_text_for_tests), which gives what they give the rest of the graph: T5-width
tokens [1, tokens, 4096] with CLIP-L's pooled vector [1, 768] as pooled_output. Every other node of the shipped API
workflow runs as shipped.
"""
import torch

T5_WIDTH = 4096
CLIP_L_POOLED = 768


class TestFluxText:
    CATEGORY = "infuse_test"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1}),
                             "tokens": ("INT", {"default": 8, "min": 1, "max": 512})}}

    def encode(self, seed, tokens):
        g = torch.Generator().manual_seed(seed)
        cond = torch.randn(1, tokens, T5_WIDTH, generator=g)
        return ([[cond, {"pooled_output": torch.randn(1, CLIP_L_POOLED, generator=g)}]],)


NODE_CLASS_MAPPINGS = {"TestFluxText": TestFluxText}
NODE_DISPLAY_NAME_MAPPINGS = {"TestFluxText": "Test Flux Text (e2e only)"}
