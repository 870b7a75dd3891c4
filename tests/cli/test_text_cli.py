"""The Florence-2 text commands of the `celeriac` executable against the committed goldens
(the same files the C++ unit tests use), run through the real CLI: stdin in, lines out.
Usage: test_text_cli.py CELERIAC_BIN DATA_DIR   (standard library only; run by CTest)"""
import json
import subprocess
import sys
from pathlib import Path

binary, data = sys.argv[1], Path(sys.argv[2]) / "florence-text"
model = str(data / "tokenizer-json")
failures = 0


def check(what, want, got):
    global failures
    if want != got:
        failures += 1
        if failures <= 10:
            print(f"MISMATCH {what}\n  want {want!r}\n  got  {got!r}")


def run(args, lines):
    out = subprocess.run([binary, *args], input="".join(l + "\n" for l in lines),
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"{args} exited {out.returncode}: {out.stderr}")
    return out.stdout.splitlines()


# tokenize: texts without line breaks (the CLI reads one text per line)
goldens = [json.loads(l) for l in (data / "tokenizer_goldens.jsonl").read_text().split("\n") if l.strip()]
texts = [g for g in goldens if "text" in g and "\n" not in g["text"] and "\r" not in g["text"]
         and "\u2028" not in g["text"] and "\u2029" not in g["text"] and "\x85" not in g["text"]]
texts = texts[:400]
got = run(["tokenize", "--model", model, "--no-special-tokens"], [g["text"] for g in texts])
for g, line in zip(texts, got):
    check(f"tokenize {g['text']!r}", g["ids"], json.loads(line))
check("tokenize line count", len(texts), len(got))

# decode with and without special tokens
with_ids = [g for g in goldens if "ids" in g and "decode" in g][:300]
got = run(["tokenize", "--model", model, "--decode", "--json"],
          [json.dumps([0] + g["ids"] + [2]) for g in with_ids])
for g, line in zip(with_ids, got):
    check(f"decode {g['ids']}", g["decode"], json.loads(line))

# post-process: every golden of the first image size, fed as JSON strings
post = [json.loads(l) for l in (data / "postprocess_goldens.jsonl").read_text().split("\n") if l.strip()]
by_task = {}
for p in post:
    if "result" in p:
        by_task.setdefault((p["task"], tuple(p["image_size"])), []).append(p)
for (task, size), items in by_task.items():
    items = items[:20]
    got = run(["postprocess", "--task", task, "--image-size", f"{size[0]},{size[1]}",
               "--json-input"], [json.dumps(p["text"]) for p in items])
    for p, line in zip(items, got):
        check(f"postprocess {task} {p['text'][:60]!r}", json.loads(p["result"]), json.loads(line))

# prompt: the tasks that take no input, as the reference constructs them
no_input = {"<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OD>", "<OCR>",
            "<OCR_WITH_REGION>", "<DENSE_REGION_CAPTION>", "<REGION_PROPOSAL>"}
checked = set()
for p in [json.loads(l) for l in (data / "prompt_goldens.jsonl").read_text().split("\n") if l.strip()]:
    if p["text"] in no_input and "prompt" in p:
        out = subprocess.run([binary, "prompt", "--task", p["text"]], capture_output=True, text=True)
        check(f"prompt {p['text']}", p["prompt"], out.stdout.rstrip("\n"))
        checked.add(p["text"])
check("prompt tasks covered", no_input, checked)
out = subprocess.run([binary, "prompt", "--task", "<CAPTION_TO_PHRASE_GROUNDING>", "--text", "a cat"],
                     capture_output=True, text=True)
check("grounding prompt", "Locate the phrases in the caption: a cat", out.stdout.rstrip("\n"))
bad = subprocess.run([binary, "prompt", "--task", "<NOPE>"], capture_output=True, text=True)
check("unknown task exit code", 2, bad.returncode)

print(f"text CLI: {failures} mismatches")
sys.exit(1 if failures else 0)
