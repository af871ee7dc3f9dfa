"""Decoupled cross-attention, Z = Attn(Q, K_t, V_t) + w * Attn(Q, K_i, V_i): the IP-Adapter family, InstantID's
adapter (and next PuLID and the Flux IP-Adapters): image projections, the attention, per-block weights."""
