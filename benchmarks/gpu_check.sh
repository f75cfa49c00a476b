#!/usr/bin/env bash
# Every check of npformer on a GPU, in one command, ending with one JSON object.
#
#   bash benchmarks/gpu_check.sh [--full]           on a machine with CuPy and a GPU
#   GPU_CHECK_BACKEND=cupysim bash benchmarks/gpu_check.sh    rehearsal on a CPU (cupysim)
#
# Needs only what the repository and a GPU machine's usual Python stack provide:
# NumPy, CuPy, pytest (pytest-xdist if present: -n 8), hypothesis, and PyTorch for the
# comparison (nothing is installed; npformer runs from this checkout).
# The default run fits one GPU lease of 8 minutes on a cold machine: its stage limits
# sum to 480 s. --full adds the TF32 step table and decoding, with longer limits.
#   1. preflight   CuPy imports and sees a GPU, else stop at once with exit 1
#   2. tests       the test suite's CuPy cases, with a missing GPU an error, not a skip
#   3. gradcheck   npformer gradcheck --backend cupy --quick, float64 (--full: every row)
#   4. train_step  small and base against PyTorch CUDA, float32, TF32 off on both, 4 rounds
#                  (the median of them); --full: small again with TF32 on on both
#   5. decode      (--full) cached and uncached greedy and beam decoding
#   6. demo        npformer demo --backend cupy with a short budget (GPU_CHECK_DEMO_MINUTES,
#                  default 1, a quarter of a minute of it decoding)
# Figures and logs go to GPU_CHECK_OUT (default: a new temporary folder), and all of
# them into one archive, gpu_check.tar.gz, beside them: a remote run brings back one file.
# The last line printed is the JSON object with every stage's status, seconds and
# figures; the exit status is 0 only if every stage passed.
set -uo pipefail
cd "$(dirname "$0")/.."
full=0
for arg in "$@"; do
  case $arg in
    --full) full=1 ;;
    *) echo "gpu_check: unknown option '$arg'; expected --full or nothing" >&2; exit 2 ;;
  esac
done
backend=${GPU_CHECK_BACKEND:-cupy}
demo_minutes=${GPU_CHECK_DEMO_MINUTES:-1}
out=${GPU_CHECK_OUT:-$(mktemp -d)}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
echo "gpu_check: backend $backend, output in $out" >&2

# stage NAME SECONDS COMMAND...: run it, keep its stdout as NAME.out and stderr as NAME.log
stage() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "gpu_check: [$name] $*" >&2
  timeout "$limit" "$@" >"$out/$name.out" 2>"$out/$name.log"
  local rc=$?
  echo "$name $rc $((SECONDS - start))" >>"$out/stages.txt"
  [ $rc = 0 ] || { echo "gpu_check: [$name] FAILED (exit $rc); last lines:" >&2; tail -n 15 "$out/$name.log" >&2; }
  return 0
}

: >"$out/stages.txt"
# 1. preflight: loud and final when there is no GPU
if ! "$py" - "$backend" >"$out/preflight.out" 2>"$out/preflight.log" <<'EOF'
import json, sys
import numpy
from npformer.backend import get_backend
name = sys.argv[1]
be = get_backend(name)  # RuntimeError naming what is missing: CuPy, or a GPU
info = {"backend": name, "numpy": numpy.__version__}
if name == "cupy":
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    info.update(cupy=cupy.__version__, cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                cuda_driver=cupy.cuda.runtime.driverGetVersion(), gpu=props["name"].decode(),
                gpu_memory_gib=round(props["totalGlobalMem"] / 2**30, 1))
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.cuda.is_available())
except ImportError:
    info["torch"] = None
print(json.dumps(info))
EOF
then
  echo "gpu_check: FAILED: backend '$backend' is not usable here:" >&2
  tail -n 3 "$out/preflight.log" >&2
  exit 1
fi
echo "preflight 0 0" >>"$out/stages.txt"

# 2. tests: only the cases of this backend; on cupy a missing GPU errors instead of skipping
if [ "$backend" = cupy ]; then select="cupy and not cupysim"; else select="$backend"; fi
# pytest-xdist workers: 8, or one per core where there are fewer (a rehearsal on a small CPU)
parallel=()
jobs=$(( $(nproc) < 8 ? $(nproc) : 8 ))
if "$py" -c "import xdist" 2>/dev/null; then parallel=(-n "$jobs"); fi
NPFORMER_REQUIRE_CUPY=$([ "$backend" = cupy ] && echo 1 || echo 0) \
  stage tests $((full ? 400 : 120)) "$py" -m pytest -q -p no:cacheprovider "${parallel[@]}" -k "$select" \
  --junitxml="$out/junit.xml"

# 3. gradient checks in float64 (the whole-model rows only with --full)
quick=(--quick)
[ $full = 1 ] && quick=()
stage gradcheck $((full ? 240 : 45)) "$py" -m npformer gradcheck --backend "$backend" "${quick[@]}" --json

# 4. training steps against PyTorch, TF32 off on both: the median of 4 rounds. A rehearsal
# (cupysim on a CPU, where a base step takes seconds) times 2 rounds of 1 after 1 warm-up step: it proves the
# stage runs, its figures mean nothing
timing=(--rounds 4 --repeats 5)
[ "$backend" = cupy ] || timing=(--rounds 2 --repeats 1 --warmup 1)
stage train_small $((full ? 150 : 60)) "$py" benchmarks/train_step.py --preset small --backend "$backend" \
  --threads 4 "${timing[@]}" --json
stage train_base $((full ? 150 : 75)) "$py" benchmarks/train_step.py --preset base --backend "$backend" \
  --threads 4 "${timing[@]}" --json
if [ $full = 1 ]; then
  stage train_small_tf32 120 "$py" benchmarks/train_step.py --preset small --backend "$backend" --threads 4 \
    --rounds 2 --repeats 10 --tf32 --json
  # 5. decoding, cached and uncached
  stage decode 120 "$py" benchmarks/decode.py --preset small --backend "$backend" --lengths 16 64 --json
fi

# 6. a short demo
stage demo $(( ${demo_minutes%.*} * 60 + 120 )) "$py" -m npformer demo --backend "$backend" \
  --minutes "$demo_minutes" --eval-minutes 0.25 --no-progress --json --out "$out/demo"

"$py" - "$out" "$select" <<'EOF'
import json, os, re, sys
import xml.etree.ElementTree as ET
out, select = sys.argv[1], sys.argv[2]
result = {"stages": {}, "ok": True}
for line in open(os.path.join(out, "stages.txt")):
    name, rc, seconds = line.split()
    figures = None
    path = os.path.join(out, name + ".out")
    if os.path.exists(path):
        lines = [l for l in open(path).read().splitlines() if l.strip()]
        try:
            figures = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            figures = {"last_line": lines[-1][-300:]}
    result["stages"][name] = {"passed": rc == "0", "exit": int(rc), "seconds": int(seconds), "figures": figures}
    result["ok"] &= rc == "0"
junit = os.path.join(out, "junit.xml")
if os.path.exists(junit):
    backend = select.split()[0]
    pattern = re.compile(r"\[(?:.*-)?%s(?:-.*)?\]" % re.escape(backend))
    counts = {"cases": 0, "passed": 0, "failed": 0, "skipped": 0}
    for case in ET.parse(junit).iter("testcase"):
        if not pattern.search(case.get("name", "")):
            continue
        counts["cases"] += 1
        kinds = {child.tag for child in case}
        key = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        counts[key] += 1
    result["stages"]["tests"]["figures"] = {backend + "_cases": counts}
    if counts["skipped"] or counts["failed"] or not counts["cases"]:
        result["stages"]["tests"]["passed"] = result["ok"] = False
for name in ("train_small", "train_base", "train_small_tf32"):
    f = (result["stages"].get(name) or {}).get("figures") or {}
    if "step_s_median" in f:
        result.setdefault("train_step", {})[name] = {
            "npformer_s": f["step_s_median"], "torch_s": f.get("torch_step_s_median"),
            "time_ratio": (f.get("ratio") or {}).get("time"),
            "gpu_mem_ratio": (f.get("ratio") or {}).get("peak_gpu_mem"),
            "npformer_gpu_mib": f.get("peak_gpu_mib"), "torch_gpu_mib": f.get("torch_peak_gpu_mib"),
            "tf32": {"npformer": f.get("tf32"), "torch": f.get("torch_tf32")}}
print(json.dumps(result))
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump(result, f)
sys.exit(0 if result["ok"] else 1)
EOF
rc=$?
tar -czf "$out/gpu_check.tar.gz" -C "$out" --exclude gpu_check.tar.gz --exclude demo . 2>/dev/null
echo "gpu_check: everything in $out/gpu_check.tar.gz" >&2
exit $rc
