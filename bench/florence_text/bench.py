#!/usr/bin/env python3
"""Florence-2 text side: celeriac (C++) vs the Python reference on the same inputs.

Encode/decode with transformers' tokenizer (the Rust `tokenizers` backend, as
BartTokenizerFast), post-processing with Microsoft's remote-code Florence2Processor (the
reference stack). Run by hand, not a test:

  cmake --build build --target florence_text_bench
  .venv-ml/bin/python bench/florence_text/bench.py --bench build/bench/florence_text/florence_text_bench \
      --remote-code PATH/processing_florence2.py
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "tests", "data", "florence-text")
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "fixtures"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="florence_text_bench executable")
    ap.add_argument("--remote-code", required=True)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import transformers
    from make_text_goldens import FLORENCE_TOKENS, load_remote_processor

    tok_dir = os.path.join(DATA, "tokenizer-json")
    tok_goldens = os.path.join(DATA, "tokenizer_goldens.jsonl")
    post_goldens = os.path.join(DATA, "postprocess_goldens.jsonl")
    cpp = json.loads(subprocess.check_output(
        [args.bench, tok_dir, tok_goldens, post_goldens, str(args.reps)]))

    recs = [json.loads(l) for l in open(tok_goldens, encoding="utf-8")]
    texts = [r["text"] for r in recs if "text" in r]
    id_seqs = [r["ids"] for r in recs]
    posts = [json.loads(l) for l in open(post_goldens, encoding="utf-8")]
    posts = [p for p in posts if "error" not in p]

    tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
    tok.add_special_tokens({"additional_special_tokens": FLORENCE_TOKENS})
    _, proc = load_remote_processor(args.remote_code)

    t0 = time.perf_counter()
    tokens = sum(len(tok(t).input_ids) for t in texts)
    py_cold = tokens / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(args.reps):
        for t in texts:
            tok(t)
    py_warm = tokens / ((time.perf_counter() - t0) / args.reps)
    n_ids = sum(len(i) for i in id_seqs)
    t0 = time.perf_counter()
    for _ in range(args.reps):
        for ids in id_seqs:
            tok.decode(ids, skip_special_tokens=False)
    py_decode = n_ids / ((time.perf_counter() - t0) / args.reps)
    t0 = time.perf_counter()
    for _ in range(args.reps):
        for p in posts:
            json.dumps(proc.post_process_generation(p["text"], p["task"], tuple(p["image_size"])))
    py_post = len(posts) / ((time.perf_counter() - t0) / args.reps)

    rows = [("encode tokens/s (first pass)", cpp["encode_tokens_per_s_cold"], py_cold),
            ("encode tokens/s (repeated)", cpp["encode_tokens_per_s_warm"], py_warm),
            ("decode ids/s", cpp["decode_ids_per_s"], py_decode),
            ("post-process results/s", cpp["postprocess_per_s"], py_post)]
    print(f"{len(texts)} texts / {tokens} tokens, {len(posts)} post-process inputs, "
          f"{args.reps} reps; C++ tokenizer load {cpp['load_s'] * 1000:.0f} ms")
    print(f"{'':32} {'celeriac':>14} {'python':>14} {'ratio':>8}")
    for name, c, p in rows:
        print(f"{name:32} {c:14.0f} {p:14.0f} {c / p:8.2f}x")


if __name__ == "__main__":
    main()
