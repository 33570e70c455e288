#!/bin/sh
# The two robustness studies of the README: macro-F1 as the fraction of unrelated images, then of
# uninformative texts, goes from 0 to 80%.
#
#   sh scripts/noise-study.sh                 # after `make demo`: uses demo-out's CLIP
#   DEMO=other-demo-dir SEEDS=5 sh scripts/noise-study.sh
#
# 1. One demo world per fraction, with the same settings but the one knob: every post keeps its
#    label and split and the other noise keeps its rate (0.25), though which posts carry the
#    other noise is drawn anew with the knob. Each is extracted with the SAME CLIP, the default
#    demo's own, which learned from the default world's training captions and posts only (no
#    world's dev or test post: the split does not move with the knobs).
# 2. The stores are linked at demo-noise/stores/{images,texts}-F, the paths that
#    experiments/noise-images.yaml and experiments/noise-texts.yaml read.
# 3. `semloc experiment` on both grids (resumable: run this again to finish an interrupted study).
#
# Environment: DEMO (default demo-out), NOISE (default demo-noise), OUT (default runs), SEEDS
# (default: the grids' 3), IMAGE_FRACTIONS (default "0.0 0.2 0.25 0.4 0.6 0.8"; 0.25 is the
# demo's default world), TEXT_FRACTIONS (default "0.0 0.2 0.4 0.6 0.8"), STUDIES (default
# "images texts"), IMAGES_GRID and TEXTS_GRID (default experiments/noise-images.yaml and
# noise-texts.yaml; their stores must be among the fractions built), SEMLOC (default: semloc
# from .venv if present, else on PATH).
#
# A quicker look at the unrelated-picture study (4 fractions, 6 trained models and the probe,
# about 1 h on 2 cores with 2 seeds):
#
#   STUDIES=images IMAGE_FRACTIONS="0.0 0.25 0.4 0.8" SEEDS=2 \
#       IMAGES_GRID=experiments/noise-images-quick.yaml sh scripts/noise-study.sh
set -eu

DEMO=${DEMO:-demo-out}
NOISE=${NOISE:-demo-noise}
OUT=${OUT:-runs}
IMAGE_FRACTIONS=${IMAGE_FRACTIONS:-"0.0 0.2 0.25 0.4 0.6 0.8"}
TEXT_FRACTIONS=${TEXT_FRACTIONS:-"0.0 0.2 0.4 0.6 0.8"}
STUDIES=${STUDIES:-"images texts"}
if [ -z "${SEMLOC:-}" ]; then
    if [ -x .venv/bin/semloc ]; then SEMLOC=.venv/bin/semloc; else SEMLOC=semloc; fi
fi
PY=$(dirname "$(command -v "$SEMLOC")")/python
[ -x "$PY" ] || PY=python3

if [ ! -f "$DEMO/summary.json" ]; then
    echo "noise-study: $DEMO/summary.json not found: run \`make demo\` (or set DEMO=<a demo workdir>) first" >&2
    exit 2
fi
CLIP=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["clip"]["dir"])' "$DEMO/summary.json")
echo "noise-study: every world is extracted with the CLIP at $CLIP"
mkdir -p "$NOISE/stores"

for study in $STUDIES; do
    if [ "$study" = images ]; then fractions=$IMAGE_FRACTIONS; else fractions=$TEXT_FRACTIONS; fi
    for f in $fractions; do
        case $study in
            images) knob="--unrelated-images $f" ;;
            # empty texts are uninformative, so with none uninformative there are none empty
            texts) knob="--uninformative-texts $f"
                   case $f in 0|0.0|0.00) knob="$knob --world empty_text_rate=0" ;; esac ;;
            *) echo "noise-study: unknown study '$study' (images or texts)" >&2; exit 2 ;;
        esac
        work="$NOISE/$study-$f"
        echo "== $study $f: world and features ($work)"
        # image_mlp only: a quick check that the store trains; the grid trains everything
        # shellcheck disable=SC2086
        "$SEMLOC" demo --workdir "$work" --backbone "$CLIP" $knob \
            --models image_mlp --no-training-free
        store=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["features"]["dir"])' "$work/summary.json")
        ln -sfn "$(cd "$store" && pwd)" "$NOISE/stores/$study-$f"
    done
done

for study in $STUDIES; do
    if [ "$study" = images ]; then grid=${IMAGES_GRID:-experiments/noise-images.yaml}
    else grid=${TEXTS_GRID:-experiments/noise-texts.yaml}; fi
    out="$OUT/$(basename "$grid" .yaml)"
    # shellcheck disable=SC2086
    "$SEMLOC" experiment "$grid" --out "$out" ${SEEDS:+--seeds "$SEEDS"}
done
