"""Model family table and the tiny Qwen2.5-VL builder used by demos and tests."""
