"""The shared vocabulary: errors, typed records, safe file reading. Imports only torch (and safetensors)."""
