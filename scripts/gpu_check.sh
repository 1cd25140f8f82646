#!/usr/bin/env bash
# The one-shot GPU check: everything our CUDA paths need measured, in at most 8 minutes, written under OUTDIR.
#
#   bash scripts/gpu_check.sh OUTDIR
#
# Run it from the repository root on a machine with one or more CUDA GPUs and an installed PyTorch (with einops,
# imageio, tqdm, matplotlib, pillow): it installs and downloads nothing. Each part has a time box; a part that
# runs out of time is stopped (SIGTERM, then SIGKILL 10 s later), its log and files are kept, and the next part
# starts. The boxes add up to BUDGET seconds; the 2-GPU part only runs when two GPUs are visible and time is left.
#
#   part        what                                                                          box (s)
#   env         torch / CUDA versions, the devices (and nvidia-smi.txt, commit.txt)              20
#   tests       pytest tests/test_cuda.py: bf16 + compile steps, CPU == GPU logits, decoding,   120
#               GPU checkpoint on the CPU, resume
#   throughput  bench.py throughput, paper preset, 128 frames, bf16, compiled, batch 8 and the  180
#               largest that fits: step time, tokens/s, MFU, memory; one video vs autoregressive
#   train       train.py, tiny preset, bf16, on the GPU (at the time limit SIGTERM saves a       120
#               checkpoint at the current step), then its held-out CE and samples
#   quality     bench.py quality --quick on that checkpoint                                      40
#   torchrun    2-process DDP smoke run (torchrun, NCCL), only with >= 2 GPUs                    60
#
# OUTDIR/summary.tsv: part, exit code (124 = stopped at its time box), seconds. OUTDIR/<part>.log: its output.
# Also: tests.xml (JUnit), throughput-*.json, train/metrics.jsonl and train/samples/, quality/*.json|png.
set -u
OUT=${1:?usage: bash scripts/gpu_check.sh OUTDIR}
PY=${PYTHON:-python3}
BUDGET=460                                   # seconds for all parts: 8 minutes minus start-up and slack
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUNS=$(mktemp -d)                            # checkpoints and token caches: large, so not under OUTDIR
START=$(date +%s)
printf 'part\texit\tseconds\n' > "$OUT/summary.tsv"

part() {  # part NAME BOX COMMAND...: run COMMAND with at most BOX seconds (less if the budget is nearly spent)
  local name=$1 box=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  (( box > left )) && box=$left
  if (( box < 10 )); then
    printf '%s\tskipped (budget spent)\t0\n' "$name" >> "$OUT/summary.tsv"; return
  fi
  local t0=$(date +%s)
  timeout -k 10 "$box" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$OUT/summary.tsv"
  echo "$name: exit $rc after $(( $(date +%s) - t0 )) s (log: $OUT/$name.log)"
}

git rev-parse HEAD > "$OUT/commit.txt" 2>/dev/null || echo "no git metadata" > "$OUT/commit.txt"
part env 20 "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', \
torch.cuda.device_count()); [print(i, torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i), \
f'{torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB') for i in range(torch.cuda.device_count())]"
timeout 20 nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
part tests 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py --junitxml "$OUT/tests.xml"
part throughput 180 "$PY" bench.py throughput --preset paper --frames 128 --dtype bf16 --compile --batch-size max \
  --steps 3 --device cuda --out-dir "$OUT"
part train 120 "$PY" train.py --device cuda --dtype bf16 --out-dir "$RUNS/tiny"   # the default tiny run
mkdir -p "$OUT/train"
cp -r "$RUNS/tiny/metrics.jsonl" "$RUNS/tiny/samples" "$OUT/train/" 2>/dev/null
if [ -f "$RUNS/tiny/mebt.pt" ]; then
  part quality 40 "$PY" bench.py quality --ckpt "$RUNS/tiny/mebt.pt" --quick --device cuda --out-dir "$OUT/quality"
else
  printf 'quality\tskipped (no checkpoint)\t0\n' >> "$OUT/summary.tsv"
fi
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  part torchrun 60 "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 train.py --device cuda \
    --dtype bf16 --tokenizer-steps 20 --transformer-steps 20 --eval-every 10 --out-dir "$RUNS/ddp"
else
  printf 'torchrun\tskipped (fewer than 2 GPUs)\t0\n' >> "$OUT/summary.tsv"
fi
rm -rf "$RUNS"
echo "total $(( $(date +%s) - START )) s; everything is in $OUT"
column -t -s $'\t' "$OUT/summary.tsv" 2>/dev/null || cat "$OUT/summary.tsv"
