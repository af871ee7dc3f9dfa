"""Where contributions land on a model: `unet` (attention sites of SD1.5 / SDXL UNets, the attn1 / attn2 replace
protocol) and `dit` (DiT blocks through patches_replace["dit"], Flux double / single blocks)."""
