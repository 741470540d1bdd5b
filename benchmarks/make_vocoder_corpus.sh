#!/usr/bin/env bash
# The real-speech corpus of benchmarks/train_vocoders.md (18 files, about 355 s):
#   the 9 files of $AVDD_SAMPLE_DATA/speech, the soundtracks of three sample videos (16 kHz mono)
#   and Debian's klettres-data (apt install klettres-data): one file per language folder, its
#   letters or syllables concatenated with 0.2 s of silence between them.
# usage: benchmarks/make_vocoder_corpus.sh OUT_DIR
set -euo pipefail
out=${1:?usage: make_vocoder_corpus.sh OUT_DIR}
data=${AVDD_SAMPLE_DATA:-../shared/data}
ff=$(python -c "from pipeline.media import ffmpeg_exe; print(ffmpeg_exe())")  # the binary the stages use
mkdir -p "$out"
cp "$data"/speech/*.wav "$out"/
for v in dfdc_real:dfdc/dfdc_sample_real/lynaeydofd.mp4 hdtf:talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4 \
         liveportrait:talking/liveportrait_d10.mp4; do
  "$ff" -loglevel error -y -i "$data/${v#*:}" -vn -ac 1 -ar 16000 "$out/video_${v%%:*}.wav"
done
[ -d /usr/share/klettres ] || { echo "klettres-data is not installed (apt install klettres-data)" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$ff" -loglevel error -y -f lavfi -i anullsrc=r=16000:cl=mono -t 0.2 "$tmp/gap.wav"
for d in en/alpha en/syllab fr/alpha de/alpha de/syllab da/syllab; do
  : > "$tmp/list.txt"
  for f in /usr/share/klettres/$d/*.ogg; do
    n=$(basename "$f" .ogg)
    "$ff" -loglevel error -y -i "$f" -ac 1 -ar 16000 "$tmp/$n.wav"
    printf "file '%s'\nfile '%s'\n" "$tmp/$n.wav" "$tmp/gap.wav" >> "$tmp/list.txt"
  done
  "$ff" -loglevel error -y -f concat -safe 0 -i "$tmp/list.txt" -c:a pcm_s16le "$out/klettres_${d/\//_}.wav"
done
ls "$out" | wc -l
