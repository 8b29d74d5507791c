#!/usr/bin/env bash
# Train each of the five cells on the bundled corpus with the same budget and print a Markdown
# table of held-out perplexity. Usage: bench/compare_cells.sh [EPOCHS] [MORE TRAIN OPTIONS]
# (run by `make compare-cells`), e.g. bench/compare_cells.sh 2 "--init uniform".
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-2}"
read -r -a MORE <<< "${2:-}"
BIN=.venv/bin
CORPUS=corpora/tinyshakespeare.txt
rows=()
for cell in lstm gru rnn peephole cifg; do
    out="runs/cells/$cell"
    start=$(date +%s)
    "$BIN/lstmtext" train "$CORPUS" --cell "$cell" --epochs "$EPOCHS" --out "$out" --force --seed 1 "${MORE[@]}" > "runs/cells-$cell.log"
    secs=$(( $(date +%s) - start ))
    ppl=$("$BIN/lstmtext" eval "$out" "$out/valid.txt" --json | "$BIN/python" -c "import json,sys; print(f\"{json.load(sys.stdin)['perplexity']:.1f}\")")
    params=$("$BIN/python" -c "
from lstmtext import checkpoint
c = checkpoint.load('$out/best.safetensors')
print(f\"{sum(v.size for v in c.params.values()):,}\")")
    rows+=("| $cell | $params | $ppl | $secs s |")
done
echo
echo "Bundled corpus (word level, defaults: 2 layers × 200, embed 200, dropout 0.2, SGD lr 20), $EPOCHS epochs, seed 1${2:+, $2}:"
echo
echo "| cell | parameters | valid perplexity | wall time |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
"$BIN/lstmtext" plot runs/cells/lstm runs/cells/gru runs/cells/rnn runs/cells/peephole runs/cells/cifg \
    --out runs/cells/curves.png
