"""Rollout engines behind one interface: `generate(items, params) -> list[SampleGroup]` and
`load_weights(tensors, version)`. The transformers engine runs anywhere; the vLLM engine lives in
actors/vllm_engine.py, since this library must import without vllm."""
