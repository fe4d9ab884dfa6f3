"""The torchvision fix holds in fresh interpreters and Ray workers, without anything importing visiong1 first."""

import subprocess
import sys

CHECK = ("import torchvision, torch; from transformers import AutoProcessor; "
         "p = AutoProcessor.from_pretrained({path!r}); print(type(p).__name__, torchvision.extension._has_ops())")


def test_processor_builds_in_a_fresh_interpreter(tiny_model):
    result = subprocess.run([sys.executable, "-c", CHECK.format(path=tiny_model)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    name, has_ops = result.stdout.split()
    assert name == "Qwen2_5_VLProcessor"
    # Here the CUDA torchvision's C ops cannot load; elsewhere the hook leaves working ops alone.
    assert has_ops in ("True", "False")


def test_processor_builds_in_a_ray_worker(ray_cluster, tiny_model):
    @ray_cluster.remote(num_cpus=0)
    def build(path):
        from transformers import AutoProcessor

        return type(AutoProcessor.from_pretrained(path)).__name__

    assert ray_cluster.get(build.remote(tiny_model), timeout=120) == "Qwen2_5_VLProcessor"


def test_defining_ops_is_skipped_when_the_extension_loads(tmp_path):
    """A directory with no loadable extension gets schemas; the function reports which case it took."""
    code = ("from pathlib import Path; from visiong1.torchvision_compat import define_missing_ops; import torch; "
            f"print(define_missing_ops(Path({str(tmp_path)!r})), torch._C._dispatch_has_kernel('torchvision::nms') "
            "or bool(torch._C._jit_get_schemas_for_operator('torchvision::nms')))")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": ":".join(sys.path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "True"]
