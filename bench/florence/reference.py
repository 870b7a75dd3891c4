#!/usr/bin/env python3
"""bench/florence, PyTorch side: Florence-2-base (random weights) through transformers, fp32.

Run by run.sh (not a test); prints one JSON object on stdout:
  .venv-ml/bin/python bench/florence/reference.py --model .cache/florence-2-base-random/native \
      --image tests/data/image/images/10_jpeg_1600x1200.jpg [--task '<CAPTION>'] [--new-tokens 64]

What is timed, in one process with torch.set_num_threads(THREADS):
  load        Florence2ForConditionalGeneration.from_pretrained (fp32) + the processor, after the
              imports (reported apart); the page cache is warm (run.sh reads the file first).
  preprocess  file bytes -> PIL open + convert("RGB") -> processor(text, images): resize,
              normalise, tokenise (the seed's path, PIL backend).
  generate    model.generate(num_beams=3, min_new_tokens = max_new_tokens = N): exactly N decoder
              steps, so both engines do the same work whatever the random weights prefer.
Inside generate, forward hooks on the model's own modules split the time without changing what
runs: vision = vision_tower, projection = multi_modal_projector, encoder = the BART encoder.
Everything after the encoder returns (decoder steps, lm_head, log-softmax, logits processors, beam
bookkeeping, cache reorder) is "decode"; per token = decode / N. The decoder and lm_head modules
are also timed alone (decoder_forward_per_step_s) to show how much of a step the search costs.
Runs: one warm-up (its numbers are reported as "first"), then --runs timed runs; the best is
reported (the least disturbed on a shared machine), with every run's total kept.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def vm_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class StageTimer:
    """Forward pre/post hooks that add each module call's wall time to a named bucket."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.total = {}
        self.calls = {}
        self.end = {}
        self.each = {}
        self.cpu = {}  # process CPU time (all threads): robust to other load on the machine
        self.end_cpu = {}
        self._start = {}
        self._start_cpu = {}

    def attach(self, module, name):
        def pre(_mod, _inp):
            self._start[name] = time.perf_counter()
            self._start_cpu[name] = time.process_time()

        def post(_mod, _inp, _out):
            now = time.perf_counter()
            self.total[name] = self.total.get(name, 0.0) + now - self._start[name]
            self.each.setdefault(name, []).append(now - self._start[name])
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - self._start_cpu[name]
            self.end_cpu[name] = time.process_time()
            self.calls[name] = self.calls.get(name, 0) + 1
            self.end[name] = now

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="native checkpoint folder")
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--task", default="<CAPTION>")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--beams", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2, help="timed runs after one warm-up")
    args = ap.parse_args()

    t0 = time.perf_counter()
    import torch
    from transformers import AutoTokenizer, Florence2ForConditionalGeneration
    from transformers.utils import logging as hf_logging
    sys.path.insert(0, str(REPO / "scripts" / "fixtures"))
    import make_florence_tiny as fixtures  # the processor exactly as the fixtures build it

    hf_logging.set_verbosity_error()
    import_s = time.perf_counter() - t0
    torch.set_num_threads(args.threads)
    from PIL import Image

    t0 = time.perf_counter()
    model = Florence2ForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    # The seed's preprocessing is CLIPImageProcessor on PIL (florence2.md section 10); the fixture
    # helper names that backend explicitly, as transformers 5 would otherwise pick torchvision.
    processor = fixtures.make_processor(AutoTokenizer.from_pretrained(args.model), 768, 577)
    load_s = time.perf_counter() - t0
    rss_after_load_kib = vm_kib("VmRSS")

    timer = StageTimer()
    lm = model.model.language_model
    timer.attach(model.model.vision_tower, "vision")
    timer.attach(model.model.multi_modal_projector, "projection")
    timer.attach(lm.encoder, "encoder")
    timer.attach(lm.decoder, "decoder")
    timer.attach(model.lm_head, "lm_head")

    image_bytes = args.image.read_bytes()
    import io

    def one_run():
        timer.reset()
        a, a_cpu = time.perf_counter(), time.process_time()
        img = Image.open(io.BytesIO(image_bytes)).convert("RGB")
        inputs = processor(text=args.task, images=img, return_tensors="pt")
        b = time.perf_counter()
        with torch.inference_mode():
            gen = model.generate(**inputs, num_beams=args.beams, do_sample=False,
                                 max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
        c, c_cpu = time.perf_counter(), time.process_time()
        decode = c - timer.end["encoder"]
        steps = timer.calls.get("decoder", 0)
        per_step = [a + b for a, b in zip(timer.each["decoder"], timer.each["lm_head"])]
        return {
            "preprocess_s": b - a,
            "vision_s": timer.total["vision"],
            "projection_s": timer.total["projection"],
            # merge of visual tokens and prompt embeddings, generate()'s set-up
            "encoder_s": timer.total["encoder"],
            "other_before_decode_s": (timer.end["encoder"] - b) - timer.total["vision"]
            - timer.total["projection"] - timer.total["encoder"],
            "decode_s": decode,
            "decode_steps": steps,
            "decode_per_token_s": decode / max(1, steps),
            "decoder_forward_per_step_s": (timer.total["decoder"] + timer.total["lm_head"])
            / max(1, steps),
            # decoder + lm_head per step, as celeriac's step() returns logits; the first step
            # also projects the cross-attention keys/values of the encoder output
            "decoder_first_step_s": per_step[0],
            "decoder_median_step_s": sorted(per_step[1:])[(steps - 1) // 2] if steps > 1 else 0.0,
            "generate_s": c - b,
            "total_s": c - a,
            "vision_cpu_s": timer.cpu["vision"],
            "encoder_cpu_s": timer.cpu["encoder"],
            "decode_cpu_s": c_cpu - timer.end_cpu["encoder"],
            "total_cpu_s": c_cpu - a_cpu,
            "prompt_ids": [int(x) for x in inputs["input_ids"][0] if int(x) != 51289],
            "token_ids": [int(x) for x in gen[0]],
        }

    first = one_run()
    runs = [one_run() for _ in range(args.runs)]
    best = min(runs, key=lambda r: r["total_s"]) if runs else first
    for r in runs:
        assert r["token_ids"] == first["token_ids"], "generate is not deterministic"
    generated = len(best["token_ids"]) - 1  # after the decoder start token
    result = {
        "engine": "pytorch",
        "versions": {"torch": torch.__version__,
                     "transformers": __import__("transformers").__version__},
        "threads": args.threads,
        "task": args.task,
        "image": str(args.image),
        "beams": args.beams,
        "new_tokens_requested": args.new_tokens,
        "new_tokens": generated,
        "import_s": import_s,
        "load_s": load_s,
        "rss_after_load_mib": rss_after_load_kib / 1024,
        "peak_rss_mib": vm_kib("VmHWM") / 1024,
        "first": {k: v for k, v in first.items() if k not in ("token_ids", "prompt_ids")},
        "best": {k: v for k, v in best.items() if k not in ("token_ids", "prompt_ids")},
        "run_totals_s": [r["total_s"] for r in runs],
        "prompt_ids": best["prompt_ids"],
        "token_ids": best["token_ids"],
    }
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
