#!/bin/bash
# The data of benchmarks/lovo.md: 355 s of real speech (benchmarks/make_vocoder_corpus.sh) with a
# split by speaker and corpus, cut into 4-s clips (2-s hop), converted by Griffin-Lim, WORLD and
# three vocoders trained with `avdd-data train-vocoder` (benchmarks/train_vocoders.md), and an
# extra test set of TTS engines that nothing here trains on (Debian's espeak-ng, flite, festival)
# beside the test speakers' real recordings.
#
#   benchmarks/make_lovo_data.sh CORPUS_DIR RUNS_DIR OUT_DIR
#     CORPUS_DIR  the real-speech corpus of make_vocoder_corpus.sh
#     RUNS_DIR    train-vocoder run directories melgan/ parallel_wavegan/ waveglow/ (best.pt in each)
#     OUT_DIR     gets labels.csv, m.jsonl, s.zarr, tts/ and ttseval.jsonl
# needs: apt install espeak-ng flite festival
set -euo pipefail
corpus=$(realpath "$1"); runs=$(realpath "$2"); out=$(mkdir -p "$3" && realpath "$3")

# speakers: one per recording set; test and validation speakers come from other corpora and
# recordings than the training ones
python3 - "$corpus" "$out/labels.csv" <<'PY'
import os, sys
corpus, out = sys.argv[1:]
split = {"klettres_fr": "test", "video_dfdc_real": "test", "codec2": "test", "psphinx": "test",
         "klettres_da": "val", "video_liveportrait": "val"}
def speaker(f):
    if f.startswith("codec2"): return "codec2"
    if f.startswith("klettres"): return "klettres_" + f.split("_")[1]
    if "librivox" in f: return "librivox"
    if f.startswith("psphinx"): return "psphinx"
    return f[:-4]
with open(out, "w") as fh:
    fh.write("path,label,identity,split\n")
    for f in sorted(os.listdir(corpus)):
        fh.write(f"{f},real,{speaker(f)},{split.get(speaker(f), 'train')}\n")
PY
avdd-data manifest folder "$corpus" --labels "$out/labels.csv" -o "$out/m.jsonl"
avdd-data extract "$out/m.jsonl" --store "$out/s.zarr" --clip-seconds 4 --audio-hop 2 --workers 0 --no-progress
for v in griffinlim world melgan parallel_wavegan waveglow; do
  ck=(); [ -f "$runs/$v/best.pt" ] && ck=(--checkpoint "$runs/$v/best.pt")
  avdd-data convert --store "$out/s.zarr" --vocoder $v "${ck[@]}" --workers 0 --no-progress
done

# the extra test set: 8 sentences x 9 TTS voices, and the test speakers' real recordings
mkdir -p "$out/tts"
cd "$out/tts"
cat > sentences.txt <<'TXT'
The quick brown fox jumps over the lazy dog near the river bank.
Please call Stella and ask her to bring these things from the store.
We will meet again next Tuesday at half past seven in the evening.
The committee decided to postpone the vote until further notice.
Numbers like four hundred and twenty one are hard to remember.
She sells sea shells by the sea shore every single summer morning.
Turn left at the second traffic light and then go straight ahead.
Nothing in the report suggests that the results were ever checked.
TXT
i=0
while read -r line; do
  i=$((i + 1))
  for v in en-us en-gb-x-rp en+f3 en-gb-scotland; do espeak-ng -v "$v" -w "espeak_${v//+/_}_$i.wav" "$line"; done
  for v in kal slt rms awb; do flite -voice "$v" -t "$line" -o "flite_${v}_$i.wav"; done
  echo "$line" | text2wave -o "festival_kal_$i.wav" 2>/dev/null
done < sentences.txt
for f in codec2_speech_orig_16k codec2_wia_16kHz klettres_fr_alpha psphinx_goforward psphinx_numbers video_dfdc_real; do
  cp "$corpus/$f.wav" "real_$f.wav"
done
{ echo "path,label,method"
  for f in *.wav; do case $f in real_*) echo "$f,real,";; *) echo "$f,fake,${f%%_*}";; esac; done; } > labels.csv
avdd-data manifest folder "$out/tts" --labels labels.csv -o "$out/ttseval.jsonl"
