#!/usr/bin/env bash
# Remake every picture of docs/gallery.md from real MNIST runs:
#   bash docs/gallery/make.sh [RUNS_DIR]      (default RUNS_DIR: runs/gallery)
# Trains the runs it lacks (about 2-5 minutes each on 2 cores), then draws each picture
# into docs/gallery/. Datasets are read from $VAELAB_DATA_DIR (or the default data directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-runs/gallery}
OUT=docs/gallery
mkdir -p "$RUNS"

train() {  # train NAME MODEL [options]: skipped when the run has its model
    local name=$1; shift
    [ -f "$RUNS/$name/model.safetensors" ] || vaelab train "$@" --data mnist --out "$RUNS/$name" --epochs 20 --threads 1 --no-progress
}
train vae2d vae --latent-dim 2
train vae20 vae
train ae20 ae --latent-dim 20 --loss bernoulli
train ae2d ae --latent-dim 2 --loss bernoulli
train cvae2d cvae --latent-dim 2 --beta 1   # beta 1: as the pictures were drawn (the default is 4)

vaelab sample "$RUNS/vae20" -n 64 -o "$OUT/samples.png"
vaelab reconstruct "$RUNS/vae20" --data mnist -n 16 --seed 0 -o "$OUT/reconstructions.png"
vaelab traverse "$RUNS/vae20" --data mnist --top 8 -o "$OUT/traverse.png" --gif "$OUT/traverse.gif"
vaelab interpolate "$RUNS/vae20" --data mnist --from 0 --to 1 -o "$OUT/interpolate_vae.png"
vaelab interpolate "$RUNS/ae20" --data mnist --from 0 --to 1 -o "$OUT/interpolate_ae.png"
vaelab manifold "$RUNS/vae2d" -n 20 -o "$OUT/manifold.png"
vaelab manifold "$RUNS/cvae2d" -n 10 -o "$OUT/style_grids.png"
vaelab manifold "$RUNS/vae2d" --data mnist --coverage -o "$OUT/coverage_vae.png"
vaelab manifold "$RUNS/ae2d" --data mnist --coverage -o "$OUT/coverage_ae.png"
vaelab scatter "$RUNS/vae2d" --data mnist -o "$OUT/latent_map_vae.png"
vaelab scatter "$RUNS/ae2d" --data mnist -o "$OUT/latent_map_ae.png"
vaelab scatter "$RUNS/vae20" --data mnist --projection tsne --limit 3000 -o "$OUT/latent_map_tsne.png"
vaelab curves "$RUNS/vae20" "$RUNS/ae20" "$RUNS/vae2d" -o "$OUT/curves.png"
vaelab analogies "$RUNS/cvae2d" --data mnist -n 8 --seed 0 -o "$OUT/analogies.png"
