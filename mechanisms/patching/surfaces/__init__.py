"""Where contributions land on a model: `dit` (DiT blocks through patches_replace["dit"], Flux double / single
blocks). The UNet attention surface is still mechanisms/hooks.py."""
