"""Test-only custom node file for the e2e server: registers the tiny SD1.5/SDXL configs with ComfyUI's
model detection so tiny checkpoints load through the real CheckpointLoaderSimple. Defines no nodes."""
import os
import sys

sys.path.insert(0, os.environ["INFUSE_TESTS_DIR"])

from support import tiny_models  # noqa: E402

tiny_models.register()

NODE_CLASS_MAPPINGS = {}
