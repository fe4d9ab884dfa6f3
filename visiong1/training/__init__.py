"""Single-rank policy training: sequence batching, the GRPO step, the supervised warm start."""
