#!/bin/sh
# Data-parallel vgg_train under mpirun (CTest train.mpi_*): usage train_mpi.sh CASE VGG_TRAIN ST_CHECK WORK MPIRUN
#   bit_identical  2 updates of 4 micro-batches give the same checkpoint bits with 1, 2 and 4 processes
#                  (deterministic reduction); a run of 2 processes resumed by 4 ends with them too; one
#                  process with one micro-batch gives the plain single-process run's bits; ZeRO-1 (2 ranks,
#                  and 2 resumed by 4) gives the same bits; fast all-reduce equals fast ZeRO-1
#   rank_dies      a rank that dies in update 1 ends the whole job, with an error, well before the timeout
#   indivisible    --micro-batches that N does not divide is refused before any file is written
set -eu
case_=$1 train=$2 st=$3 work=$4 mpirun=$5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi() { n=$1; shift; "$mpirun" --oversubscribe --bind-to none -np "$n" "$@"; }
g='--batch 4 --sample-steps 4 --bins 1 --eval-every -1 --sample-every -1 --ckpt-every 1 --seed 3'
d=$work/train_mpi_$case_
rm -rf "$d"; mkdir -p "$d"
case $case_ in
bit_identical)
  for n in 1 2 4; do mpi $n "$train" $g --micro-batches 4 --steps 2 --out "$d/np$n" 2>"$d/np$n.err"; done
  grep -q '4 processes (mpi, deterministic reduction)' "$d/np4.err"
  mpi 2 "$train" $g --micro-batches 4 --steps 1 --out "$d/resumed" 2>/dev/null
  mpi 4 "$train" --resume --steps 2 --out "$d/resumed" 2>/dev/null
  for run in np2 np4 resumed; do
    for x in lora value optimizer; do cmp "$d/np1/checkpoint/$x.safetensors" "$d/$run/checkpoint/$x.safetensors"; done
  done
  "$st" finite "$d/np1/checkpoint/lora.safetensors"
  test "$(grep -c loss_matching "$d/np1/metrics.jsonl")" -eq 2
  cmp "$d/np1/metrics.jsonl" "$d/np2/metrics.jsonl" 2>/dev/null || \
    test "$(sed 's/"[a-z_]*_s":[0-9.e+-]*//g; s/"sec_per_update":[0-9.e+-]*//' "$d/np1/metrics.jsonl")" = \
         "$(sed 's/"[a-z_]*_s":[0-9.e+-]*//g; s/"sec_per_update":[0-9.e+-]*//' "$d/np2/metrics.jsonl")"
  # ZeRO-1: the moments sharded over 2 ranks, then a resume by 4: the same bits, the same files
  mpi 2 "$train" $g --micro-batches 4 --steps 2 --zero 1 --out "$d/zero2" 2>"$d/zero2.err"
  grep -q 'ZeRO-1: AdamW moments per rank' "$d/zero2.err"
  mpi 2 "$train" $g --micro-batches 4 --steps 1 --zero 1 --out "$d/zero_resumed" 2>/dev/null
  mpi 4 "$train" --resume --steps 2 --out "$d/zero_resumed" 2>/dev/null
  for run in zero2 zero_resumed; do
    for x in lora value optimizer; do cmp "$d/np1/checkpoint/$x.safetensors" "$d/$run/checkpoint/$x.safetensors"; done
  done
  # fast reduction over 2 ranks: all-reduce and ZeRO-1's reduce-scatter give the same bits
  mpi 2 "$train" $g --micro-batches 4 --steps 2 --reduce fast --out "$d/fast" 2>/dev/null
  mpi 2 "$train" $g --micro-batches 4 --steps 2 --reduce fast --zero 1 --out "$d/fast_zero" 2>/dev/null
  for x in lora value optimizer; do cmp "$d/fast/checkpoint/$x.safetensors" "$d/fast_zero/checkpoint/$x.safetensors"; done
  # fast sums in autograd's and MPI's order: the same run to AdamW-normalised rounding (measured: within 3e-3 relative, not within 1e-3)
  "$st" close "$d/fast/checkpoint/lora.safetensors" "$d/np1/checkpoint/lora.safetensors" 1e-2
  # one process, one micro-batch: the plain run's bits
  mpi 1 "$train" $g --steps 2 --out "$d/np1_mb1" 2>/dev/null
  "$train" $g --steps 2 --out "$d/plain" 2>/dev/null
  for x in lora value optimizer; do cmp "$d/np1_mb1/checkpoint/$x.safetensors" "$d/plain/checkpoint/$x.safetensors"; done
  echo TRAIN_MPI_BIT_IDENTICAL ;;
rank_dies)
  start=$(date +%s)
  if VGG_TEST_DIE=1:1 VGG_COMM_TIMEOUT=120 mpi 2 -x VGG_TEST_DIE -x VGG_COMM_TIMEOUT "$train" $g --micro-batches 2 --steps 3 \
       --out "$d/run" >"$d/out" 2>&1; then
    echo "the job succeeded although rank 1 died"; exit 1
  fi
  took=$(( $(date +%s) - start ))
  cat "$d/out"
  test "$took" -lt 100
  grep -qi 'exit' "$d/out"
  test ! -e "$d/run/checkpoint/lora.safetensors" || ! grep -q '"step": 3' "$d/run/checkpoint/state.json"
  echo TRAIN_MPI_RANK_DIES ;;
indivisible)
  if mpi 2 "$train" $g --micro-batches 3 --batch 3 --steps 1 --out "$d/run" >"$d/out" 2>&1; then exit 1; fi
  cat "$d/out"
  grep -q 'must be a multiple of the 2 processes' "$d/out"
  test ! -e "$d/run"
  echo TRAIN_MPI_INDIVISIBLE ;;
esac
