"""Image tokens stacked into the text embedding: Flux Redux (and next PhotoMaker, token replacement)."""
