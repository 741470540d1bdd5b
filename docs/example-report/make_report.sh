#!/usr/bin/env bash
# The whole chain on the real sample media, ending in an evaluation report with every section:
# manifests -> extract -> convert (Griffin-Lim, WORLD) -> build-shards (own, vocoded, shifted,
# swapped pairs; WORLD held out as the unseen category) -> avdd-train (tiny {2+1}-stream model)
# -> avdd-eval (both modes, robustness, unseen category, shortcut audit, visualizations)
# -> avdd-detect on every sample video and a wav file.
#
#   bash docs/example-report/make_report.sh [WORK_DIR]      (about 15 minutes on 2 CPU cores)
#
# Four of the six sample videos have a soundtrack (the FF++ ones have none, as in FF++), so the
# detector sees a few hundred samples of four people: the report shows what the tools produce,
# its numbers are no benchmark. docs/example-report/ holds one run's output.
set -euo pipefail
DATA=${AVDD_SAMPLE_DATA:-$(dirname "$0")/../../../shared/data}
WORK=${1:-/tmp/avdd-example}
EPOCHS=${EPOCHS:-20}
mkdir -p "$WORK"

avdd-data manifest dfdc "$DATA/dfdc" -o "$WORK/dfdc.jsonl"
avdd-data manifest ffpp "$DATA/ffpp" -o "$WORK/ffpp.jsonl"
avdd-data manifest folder "$DATA/talking" --default-label real -o "$WORK/talking.jsonl"
avdd-data merge "$WORK/dfdc.jsonl" "$WORK/ffpp.jsonl" "$WORK/talking.jsonl" -o "$WORK/all.jsonl"
avdd-data extract "$WORK/all.jsonl" --store "$WORK/store.zarr" --clips-per-video 16 --no-progress
avdd-data convert --store "$WORK/store.zarr" --vocoder griffinlim --no-progress
avdd-data convert --store "$WORK/store.zarr" --vocoder world --no-progress
avdd-data build-shards --store "$WORK/store.zarr" --out "$WORK/shards.zarr" --pairs own,vocoded,shifted,swapped \
    --holdout-category world --splits train=0.4,val=0.3,test=0.3 --no-keep-splits --no-progress
avdd-data inspect --store "$WORK/store.zarr"

[ -f "$WORK/run/best.pt" ] || avdd-train --shards "$WORK/shards.zarr" --model av --preset tiny --epochs "$EPOCHS" \
    --out "$WORK/run" --no-progress > "$WORK/train.json"
avdd-eval --checkpoint "$WORK/run/best.pt" --shards "$WORK/shards.zarr" --out "$WORK/report" \
    --split train,val,test --robustness --holdout-category world --visualize 4
avdd-detect "$DATA/dfdc" "$DATA/ffpp" "$DATA/talking" "$DATA/speech/psphinx_numbers.wav" \
    --checkpoint "$WORK/run/best.pt" --json > "$WORK/detect.json"
cat "$WORK/detect.json"
