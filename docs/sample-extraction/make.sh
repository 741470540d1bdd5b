#!/usr/bin/env bash
# The six sample videos of ../shared/data (or $AVDD_SAMPLE_DATA) through manifests and extract,
# then `inspect`: the counts (inspect.txt) and a contact sheet of the first clip of every video
# (contact-sheet.png). Run from the repository root with avdd installed.
set -euo pipefail
DATA=${AVDD_SAMPLE_DATA:-../shared/data}
OUT=${1:-out/sample-extraction}
DOC=docs/sample-extraction
mkdir -p "$OUT"
avdd-data manifest dfdc "$DATA/dfdc" -o "$OUT/dfdc.jsonl"
avdd-data manifest ffpp "$DATA/ffpp" -o "$OUT/ffpp.jsonl"
avdd-data manifest folder "$DATA/talking" -o "$OUT/talking.jsonl" --default-label real
avdd-data merge "$OUT/dfdc.jsonl" "$OUT/ffpp.jsonl" "$OUT/talking.jsonl" -o "$OUT/six.jsonl"
avdd-data extract "$OUT/six.jsonl" --store "$OUT/six.zarr" --clips-per-video 2 --no-progress
avdd-data inspect --store "$OUT/six.zarr" --png "$DOC/contact-sheet.png" --rows 6 | tee "$DOC/inspect.txt"
