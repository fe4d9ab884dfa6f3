#!/usr/bin/env bash
# The GPU check, for a lent GPU machine as it is (one GPU, no network, its own python3 with torch and transformers,
# no vLLM, Ray or DeepSpeed): the learner at real size without Ray (benchmarks/gpu_check.py). Never run by CI.
# Pure-Python packages the machine lacks travel as wheels in .whl/ (carried; see the device tool's notes):
#   pydantic, pydantic-core, annotated-types, typing-inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 290 python3 -m benchmarks.gpu_check --device cuda --models mid,3b --steps 3 --tokens 4096 "$@"
