#!/usr/bin/env bash
# Issue 34's training campaign: the 15-minute default recipe (hpatches-train descriptor, embedded data, seed 0)
# with and without per-view orientation/scale noise, each judged on whole-image matching (DoG, 17 real pairs).
# Resumable: a finished run (model.keras) is not retrained; each verdict is appended to
# benchmarks/results/view_noise_runs.jsonl.  Usage: bash benchmarks/view_noise_runs.sh NAME [train flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
out=runs/view-noise/$name
if [ ! -f "$out/model.keras" ]; then
  if [ -d "$out/checkpoints" ]; then resume=--resume; else resume=; fi
  /usr/bin/time -v hpatches-train -q descriptor --out "$out" --no-eval $resume "$@" 2> "$out.time" || { cat "$out.time"; exit 1; }
fi
python benchmarks/image_matching.py --detector dog --model "$out/model.keras" --json "$out.im.json" > "$out.im.txt" || true
python - "$name" "$out" "$*" <<'PY'
import json, sys, time
name, out, flags = sys.argv[1:]
r = json.load(open(out + ".im.json"))
rows = {x["meta"]["descriptor"]: x["overall"] for x in r["results"]["dog"]}
me = rows[[k for k in rows if k not in ("sift", "rootsift")][0]]
rs = rows["rootsift"]
line = {"run": name, "flags": flags, "date": time.strftime("%Y-%m-%d %H:%M"),
        "mma_1_3_5_10": [round(me["mma"][i], 4) for i in (0, 2, 4, 9)],
        "rootsift_mma_1_3_5_10": [round(rs["mma"][i], 4) for i in (0, 2, 4, 9)],
        "h_1_3_5": [me["homography"][k] for k in ("1", "3", "5")],
        "rootsift_h_1_3_5": [rs["homography"][k] for k in ("1", "3", "5")],
        "pass": r["pass"]}
open("benchmarks/results/view_noise_runs.jsonl", "a").write(json.dumps(line) + "\n")
print(json.dumps(line))
PY
