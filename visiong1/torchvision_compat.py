"""Make a CUDA-built torchvision importable next to CPU torch, in every process of this environment.

pip finds only CUDA builds of torchvision here; their C extension needs libc10_cuda.so, so it fails to load and
torchvision's unguarded fake-kernel registrations for `torchvision::nms`/`qnms` then raise at import. The
Qwen2.5-VL processor (and vLLM, through transformers) imports torchvision, but uses only its pure-Python transforms.

The fix runs from `visiong1_torchvision.pth` (installed into site-packages), so it holds in pytest, Ray workers and
vLLM's spawned children alike. It is lazy: torch is imported only when something imports torchvision, and the op
schemas are defined only when the real extension cannot load, so a working CUDA torchvision is left untouched.
"""

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_OPS_WITHOUT_GUARD = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def define_missing_ops(package_dir: Path) -> bool:
    """Load torchvision's C extension, or define schemas for its unguarded ops if it cannot load.

    Returns True when schemas were defined (the extension is unusable), False when the real ops loaded.
    """
    import torch

    for extension in sorted(package_dir.glob("_C*.so")):
        try:
            torch.ops.load_library(str(extension))
            return False
        except OSError:
            break
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _OPS_WITHOUT_GUARD:
        library.define(schema)
    _KEEP_ALIVE.append(library)  # a Library object removes its definitions when garbage-collected
    return True


_KEEP_ALIVE: list = []


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Intercepts the first `import torchvision` and prepares its ops before the module body runs."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.submodule_search_locations:
            define_missing_ops(Path(next(iter(spec.submodule_search_locations))))
        return spec


def install_import_hook() -> None:
    """Register the finder once per process (called from the .pth file at interpreter start)."""
    if "torchvision" in sys.modules or any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionFinder())
