#!/bin/bash
# Train CollaGAN on several GPU nodes with SLURM: one torchrun per node, one process per GPU.
# Submit from the repository root:   sbatch benchmarks/slurm_train.sh
# A rerun of the same script continues the run (--resume) from its last checkpoint, with the same
# number of processes (NODES x GPUS_PER_NODE): every process continues its own random draws.
#SBATCH --job-name=collagan-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@120          # SIGTERM two minutes before the limit: every rank saves one whole checkpoint
#SBATCH --output=%x-%j.log
set -euo pipefail

DATA=${DATA:-../shared/data/manifest.json}   # shared by all nodes
OUT=${OUT:-runs/collagan-$SLURM_JOB_NAME}     # on a shared file system: every rank reads the checkpoint on resume
STEPS=${STEPS:-100000}
GPUS_PER_NODE=${SLURM_GPUS_PER_NODE:-4}
export PYTHONPATH=$PWD/CollaGANImpute${PYTHONPATH:+:$PYTHONPATH}
export OMP_NUM_THREADS=$(( SLURM_CPUS_PER_TASK / GPUS_PER_NODE ))

RESUME=()
[ -f "$OUT/checkpoint.safetensors" ] && RESUME=(--resume)

# The first node is the rendezvous point for all of them.
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun torchrun \
  --nnodes="$SLURM_JOB_NUM_NODES" --nproc_per_node="$GPUS_PER_NODE" \
  --rdzv_id="$SLURM_JOB_ID" --rdzv_backend=c10d --rdzv_endpoint="$HEAD:29500" \
  -m CollaGANImputeLib train --data "$DATA" --out "$OUT" --steps "$STEPS" "${RESUME[@]}" \
  --validation BraTS-GLI-00001-000 --device cuda --bf16 --batch-size 8 --progress lines
