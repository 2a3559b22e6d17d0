#!/usr/bin/env bash
# Every benchmark of bench/ on a CUDA device, in one go, each under its own time limit (a benchmark that fails or
# runs out of time is reported and the next one starts). Writes the whole log and one JSON per benchmark into
# OUT (default work_dirs/gpu_bench) and packs the JSON files into OUT/results.tar.gz.
#
#     bash bench/run_gpu.sh                 # the default limits: about 9 minutes in all
#     SCALE=2 bash bench/run_gpu.sh         # every limit doubled
#
# Run from the checkout's root, with mmcv (CUDA ops), mmdet, mmseg and the peers (pytorch-msssim, kornia,
# pytorch-metric-learning, scikit-learn) importable.
set -u
out=${OUT:-work_dirs/gpu_bench}
scale=${SCALE:-1}
py=${PYTHON:-python3}
mkdir -p "$out/json"
export PYTHONUNBUFFERED=1

bench() {  # name, limit in seconds, script arguments...
    local name=$1 limit=$(($2 * scale))
    shift 2
    echo "=== $name: $py $* (limit ${limit}s) start $(date +%T)"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$py" "$@"
    local rc=$?
    echo "=== $name: rc=$rc ($([ $rc = 124 ] && echo 'out of time' || echo done)) after $((SECONDS - t0)) s"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$py" -c "import torch, mmcv, mmdet, mmseg; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__)"
    j="$out/json"
    bench ssim 60 bench/bench_ssim.py --device cuda --batch 2 8 --repeat 10 --out "$j/ssim_cuda.json"
    bench seg_dakd 80 bench/bench_seg_dakd.py --device cuda --rounds 10 --out "$j/seg_dakd_cuda.json"
    bench seg_dakd_amp 60 bench/bench_seg_dakd.py --device cuda --amp --rounds 10 --out "$j/seg_dakd_cuda_amp.json"
    bench lad 90 bench/bench_lad.py --device cuda --repeat 3 --out "$j/lad_cuda.json"
    bench colad 70 bench/bench_colad.py --device cuda --settings coco --size 800 1344 --repeat 3 \
        --out "$j/colad_cuda.json"
    bench retrieval 60 bench/bench_retrieval.py --device cuda --out "$j/retrieval_cuda.json"
    bench s2sd 50 bench/bench_s2sd.py --device cuda --iters 10 --out "$j/s2sd_cuda.json"
    bench s2sd_amp 40 bench/bench_s2sd.py --device cuda --amp --iters 10 --out "$j/s2sd_cuda_amp.json"
} 2>&1 | tee "$out/log.txt"
tar czf "$out/results.tar.gz" -C "$out" json
