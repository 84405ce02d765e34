#!/usr/bin/env bash
# run.sh: the training-step benchmark, sft beside PyTorch on this machine
# (issue 3's memory check and issue 8's speed table).
#
#   bench/run.sh [--quick] [--shapes a,b] [--modes full,lora] [--dtypes fp32,bf16] [--steps N]
#                [--warmup N] [--rounds N] [--threads N] [--no-train] [--no-data] [--profile]
#                [--build DIR] [--out FILE]
#
# For each shape (gpt2-6l: GPT-2 6 layers d=384, B=8 T=256; gpt2-124m: GPT-2-124M-shaped,
# B=4 T=256; llama-100m: a Llama-shaped ~100M model, B=4 T=256) and mode (full, lora) it
# alternates the systems A, B, A, B (--rounds times): sft's training step through the
# library (bench_step) in fp32, PyTorch fp32, sft's step with `--dtype bf16` (system
# sft-bf16), PyTorch bf16 autocast (torch_step.py, Debian's python3-torch at its best
# setting: OMP_WAIT_POLICY=PASSIVE, set_num_threads = threads, OpenBLAS's own AVX-512
# kernels as sft uses them); then `sft train` end to end once per dtype (train_step.py).
# It measures the ceilings on the same machine before and after: OpenBLAS sgemm,
# sft_gemm_bf16 and torch.matmul in bf16 at the step's matrix shapes; and, for the GPT-2
# shapes, the share of data loading and tokenization in `sft train`'s step (bench_data:
# 10000 chat records of the project's corpus, the GPT-2 tokenizer and chat template).
# Every measurement is a RESULT line in the results file; bench/summarize.py prints the table.
#
# --quick: gpt2-124m only, 3 timed steps after 1 warm-up (the README's table).
# --profile: also the per-kernel breakdown of sft's step (bench_step --profile).
# Defaults: every shape, both modes, 5 timed steps after 2 warm-up, 2 rounds, all cores.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=build
SHAPES="gpt2-6l,gpt2-124m,llama-100m"
MODES="full,lora"
DTYPES="fp32,bf16"
DATA=1
STEPS=5
WARMUP=2
ROUNDS=2
THREADS=$(nproc)
TRAIN=1
PROFILE=0
OUT=""
PY=/usr/bin/python3 # Debian's, with python3-torch (the python3 first on PATH may lack torch)

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) SHAPES=gpt2-124m; STEPS=3; WARMUP=1 ;;
        --shapes) SHAPES=$2; shift ;;
        --modes) MODES=$2; shift ;;
        --dtypes) DTYPES=$2; shift ;;
        --no-data) DATA=0 ;;
        --steps) STEPS=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --no-train) TRAIN=0 ;;
        --profile) PROFILE=1 ;;
        --build) BUILD=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) usage 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage 2 >&2 ;;
    esac
    shift
done

IFS=, read -r -a dtype_list <<<"$DTYPES"
for dtype in "${dtype_list[@]}"; do
    case "$dtype" in fp32 | bf16) ;; *) echo "run.sh: --dtypes: '$dtype' is not fp32 or bf16" >&2; exit 2 ;; esac
done
if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "run.sh: $PY cannot import torch: install Debian's python3-torch (apt-get install python3-torch)" >&2
    exit 1
fi
make --no-print-directory BUILD="$BUILD" "$BUILD/sft" "$BUILD/bench/bench_step" "$BUILD/bench/bench_data" >&2
STEP_BIN="$BUILD/bench/bench_step"
mkdir -p "$BUILD/bench"
RESULTS=${OUT:-$BUILD/bench/results-$(date -u +%Y%m%dT%H%M%SZ).txt}
LOG="$RESULTS.log"
: >"$RESULTS"
: >"$LOG"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sft-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM # so that the EXIT trap cleans up

{
    echo "# sft training-step benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, threads $THREADS"
    echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset (sft and torch_step.py set passive)} torch $("$PY" -c 'import torch; print(torch.__version__)')"
    echo "# steps $STEPS after $WARMUP warm-up, $ROUNDS rounds"
} | tee -a "$RESULTS" >&2

# run LABEL CMD...: runs one measurement; its RESULT lines go to the results
# file (and the terminal), everything else to the log.
run() {
    local label=$1
    shift
    echo "== $label" >&2
    echo "== $label: $*" >>"$LOG"
    "$@" 2>>"$LOG" | tee -a "$LOG" | grep '^RESULT' | tee -a "$RESULTS" >&2 || {
        echo "run.sh: $label failed (see $LOG)" >&2
        return 1
    }
}

IFS=, read -r -a shape_list <<<"$SHAPES"
IFS=, read -r -a mode_list <<<"$MODES"
# sft's system name for a dtype: sft (fp32), sft-bf16
sft_system() { if [ "$1" = fp32 ]; then echo sft; else echo "sft-$1"; fi; }
# ceilings SHAPE: the matrix-product rates on this machine at the step's shapes. Measured
# before and after each shape's runs; the summary keeps the best (a loaded moment only lowers them).
ceilings() {
    run "$1 sgemm (OpenBLAS, as sft runs it)" "$STEP_BIN" sgemm "$1" --threads "$THREADS"
    if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
        # The environment forces OpenBLAS's kernels; show what the CPU's own choice would give.
        run "$1 sgemm (OpenBLAS, its own kernel choice)" env -u OPENBLAS_CORETYPE "$STEP_BIN" sgemm "$1" \
            --threads "$THREADS" --alt
    fi
    run "$1 torch.matmul fp32 and bf16" "$PY" bench/torch_step.py matmul "$1" --threads "$THREADS"
    # sft's own bf16 product (prints nothing where the CPU has no AVX512_BF16)
    run "$1 bf16 products (sft_gemm_bf16, split as the engine splits)" "$STEP_BIN" bf16gemm "$1" --threads "$THREADS"
}

for shape in "${shape_list[@]}"; do
    ceilings "$shape"

    for mode in "${mode_list[@]}"; do
        for ((round = 1; round <= ROUNDS; round++)); do
            for dtype in "${dtype_list[@]}"; do
                run "$shape $mode $(sft_system "$dtype") (library step), round $round" "$STEP_BIN" step "$shape" \
                    --mode "$mode" --dtype "$dtype" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS"
                run "$shape $mode torch $dtype, round $round" "$PY" bench/torch_step.py step "$shape" --mode "$mode" \
                    --dtype "$dtype" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS"
            done
        done
        if [ "$PROFILE" = 1 ]; then
            for dtype in "${dtype_list[@]}"; do
                echo "== $shape $mode $(sft_system "$dtype") profile" >&2
                "$STEP_BIN" step "$shape" --mode "$mode" --dtype "$dtype" --steps "$STEPS" --warmup "$WARMUP" \
                    --threads "$THREADS" --profile 2>>"$LOG" | grep '^PROFILE' | tee -a "$RESULTS" >&2
            done
        fi
        if [ "$TRAIN" = 1 ]; then
            model="$WORK/model-$shape"
            if [ ! -d "$model" ]; then
                tokenizer=tests/fixtures/hf/models/gpt2-tiny
                case "$shape" in llama-*) tokenizer=tests/fixtures/hf/models/llama2-tiny ;; esac
                "$STEP_BIN" config "$shape" "$WORK/config-$shape.json"
                "$BUILD/sft" init --config "$WORK/config-$shape.json" --tokenizer "$tokenizer" --out "$model" >>"$LOG" 2>&1
            fi
            read -r B T <<<"$("$STEP_BIN" batch "$shape")"
            for dtype in "${dtype_list[@]}"; do
                mkdir -p "$WORK/train-$shape-$mode"
                run "$shape $mode sft train --dtype $dtype (end to end)" "$PY" bench/train_step.py "$BUILD/sft" \
                    "$model" "$shape" "$mode" "$WORK/train-$shape-$mode" --B "$B" --T "$T" --steps "$STEPS" \
                    --warmup "$WARMUP" --threads "$THREADS" --dtype "$dtype"
                rm -rf "$WORK/train-$shape-$mode"
            done
        fi
    done
    if [ "$DATA" = 1 ]; then
        case "$shape" in
            gpt2-*) # the trainer's data path is single-threaded; its own cache folder, removed after
                run "$shape data loading and tokenization (bench_data)" "$BUILD/bench/bench_data" --shape "$shape" ;;
        esac
    fi
    rm -rf "$WORK/model-$shape"
    ceilings "$shape"
done

echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS" >&2
echo >&2
"$PY" bench/summarize.py "$RESULTS"
echo
echo "results: $RESULTS (log: $LOG); table again: $PY bench/summarize.py $RESULTS [--markdown]"
