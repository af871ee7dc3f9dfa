"""Injection mechanisms: features -> a change to a ComfyUI model. Pure torch plus ComfyUI hooks."""
