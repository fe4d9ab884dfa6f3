"""Data selection: pass-rate difficulty (offline and online), influence scoring, and the round manifest."""
