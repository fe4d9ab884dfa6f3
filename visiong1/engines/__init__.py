"""Rollout engines behind one interface: `generate(items, params) -> list[SampleGroup]` and
`load_weights(tensors, version)`. The transformers engine runs anywhere; the vLLM engine comes with the rollout
issue (it lives in actors/, since this library must import without vllm)."""
