"""The shared vocabulary: errors, typed records, safe file reading, perceiver blocks, and modules under ComfyUI's model
management. Imports only torch (and safetensors; comfy where it must)."""
