"""Test harness: locating ComfyUI, tiny models in real layouts, a real ComfyUI server."""
