"""Residual injection (ControlNet, T2I-Adapter, IdentityNet) on top of ComfyUI's own ControlNet."""
