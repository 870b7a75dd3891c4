#!/usr/bin/env python3
"""bench/florence: the side-by-side table, ratios and issue 5's goals, from the JSON that the probe,
reference.py (PyTorch) and celeriac_bench_florence wrote. run.sh calls it; any Python 3 runs it.

  compare.py --probe P.json [--probe P2.json] --pytorch T.json [--celeriac C.json]
             --config DIR/config.json [--json OUT]

Derived numbers (written out so they can be checked by hand):
  vision FLOPs   2 x the multiply-adds of the DaViT tower at 768x768 (patch convs, qkv/proj/fc1/fc2,
                 depthwise convs, window and channel attention products), the same count as
                 bench/gemm/vision_bench.cc; share of peak = FLOPs / vision time / GEMM peak at
                 the thread count both sides ran with; also per busy core (FLOPs / CPU time)
                 against the 1-thread peak.
  decode bound   bytes one decode step must read / measured read rate (same thread count). Bytes = the
                 decoder layers' weights (self-attention q/k/v/out, cross-attention q/out — its
                 k/v are projected once per request —, fc1, fc2, LayerNorms) + lm_head over the
                 51,289 ids the search ranks, in fp32. Read rates are over huge pages, as the
                 decoder's weights are (over 4 KiB pages this machine reads 15-25% slower; printed
                 for comparison). The cross-attention keys/values (read every
                 step too) are shown apart: the issue's bound counts weights only. With
                 several probes (run.sh probes before PyTorch and after celeriac) the highest
                 read rate is used: the strictest bound the machine showed during the run.
                 The goal itself is judged on celeriac_bench_florence's paired decode: every
                 step preceded by a plain read of as many bytes as its weights (same threads),
                 the median of step / read over the steps, also apart for the steps whose read
                 ran above and below 45 GB/s (met only if each state that occurred is within
                 1.3x as well). This machine's read rate flips
                 between ~33 and ~55-60 GB/s within seconds, so a bound taken minutes (or even a
                 second) away from the step may belong to the other state. The read rate taken
                 right after each timed decode (128 MiB, best of 0.3 s) is shown beside it.
  decode step    celeriac: the median of its whole steps (one step() call to the next: decoder
                 forward, search, reorder), steps 2..n-1; the cross-attention keys/values made
                 once per request before the first step are the "decoder start" row.
                 "decode per token" = (start + all steps) / n, the number both sides report.
"""
import argparse
import json
import sys
from pathlib import Path

REMOTE_VOCAB = 51289  # what the search ranks; native checkpoints pad lm_head to 51328 rows


def vision_gflop(v: dict, size: int = 768) -> float:
    dims = v.get("embed_dim") or v.get("dim_embed")
    mac, h, cin = 0.0, size, 3
    for s, c in enumerate(dims):
        k, st, p = v["patch_size"][s], v["patch_stride"][s], v["patch_padding"][s]
        h = (h + 2 * p - k) // st + 1
        n = float(h * h)
        mac += n * c * cin * k * k
        w = v["window_size"]
        padded = (h + w - 1) // w * w
        for _ in range(v["depths"][s]):
            mac += 2 * n * 12.0 * c * c + 4 * n * c * 9  # linear layers of both blocks, dw convs
            mac += 2.0 * padded * padded * w * w * c       # window attention q.k and p.v
            mac += 2.0 * n * c * 32                        # channel attention (group dim 32)
        cin = c
    return 2 * mac / 1e9


def decode_bytes(t: dict, encoder_len: int) -> tuple:
    d, f, layers = t["d_model"], t["decoder_ffn_dim"], t["decoder_layers"]
    per_layer = (4 * (d * d + d)      # self-attention q, k, v, out
                 + 2 * (d * d + d)    # cross-attention q, out
                 + 2 * d * f + f + d  # fc1, fc2
                 + 3 * 2 * d)         # three LayerNorms
    weights = 4 * (layers * per_layer + REMOTE_VOCAB * d)
    cross_kv = 4 * layers * 2 * encoder_len * d
    return weights, cross_kv


def cpu_flags() -> set:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def decode_goal(cc: dict, step_bound_s: float, step_bw: float, bound_s: float) -> tuple:
    """The decode-step goal, judged on the paired measurement when there is one: each step
    preceded by a plain read of as many bytes as its weights, so the median of step / read is the
    step against its bound at that moment. The timed runs' median step against the read rate
    taken after the decode, and against the best probe, are shown beside it."""
    step = cc["best"]["decode_step_median_s"]
    beside = (f"timed runs: {step * 1e3:.1f} ms = {step / step_bound_s:.2f}x of "
              f"{step_bound_s * 1e3:.1f} ms ({step_bw:.1f} GB/s read after the decode), "
              f"{step / bound_s:.2f}x the best probe's {bound_s * 1e3:.1f} ms; per token with the "
              f"start: {cc['best']['decode_per_token_s'] / step_bound_s:.2f}x")
    paired = cc.get("decode_paired_with_reads")
    if not paired:
        return ("decode step <= 1.3x the bandwidth bound", step / step_bound_s <= 1.3, beside)
    # Met only if the pairs of each read state that occurred are within 1.3x too.
    ratio = paired["step_to_read_median"]
    states, met = [], ratio <= 1.3
    for key, name in (("read_below_45_gbs", "slow reads"), ("read_above_45_gbs", "fast reads")):
        part = paired.get(key) or {}
        if part.get("pairs"):
            met = met and part["step_to_read_median"] <= 1.3
            states.append(f"{name} ({part['read_gbs_median']:.0f} GB/s, {part['pairs']} steps): "
                          f"{part['step_to_read_median']:.2f}x")
    return ("decode step <= 1.3x the bandwidth bound", met,
            f"{ratio:.2f}x, median over {paired['pairs']} steps each preceded by a read of its "
            f"{paired['weight_bytes'] / 1e6:.0f} MB (step {paired['step_median_s'] * 1e3:.1f} ms, "
            f"read {paired['read_median_s'] * 1e3:.1f} ms = {paired['read_gbs_median']:.1f} GB/s; "
            + "; ".join(states) + "); " + beside)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probe", type=Path, required=True, action="append")
    ap.add_argument("--pytorch", type=Path, required=True)
    ap.add_argument("--celeriac", type=Path)
    ap.add_argument("--bf16", type=Path, help="celeriac_bench_florence_bf16's JSON")
    ap.add_argument("--celeriac-bf16", type=Path,
                    help="celeriac_bench_florence --bf16-decoder's JSON (bf16 decoder weights)")
    ap.add_argument("--celeriac-bf16-all", type=Path,
                    help="celeriac_bench_florence --bf16's JSON (that + bf16 encoder GEMMs)")
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    probes = [json.loads(p.read_text()) for p in args.probe]
    # Every ceiling at its best over the probes: the strictest goals.
    probe = {k: max(p[k] for p in probes) for k in probes[0] if isinstance(probes[0][k], (int, float))}
    probe_reads = [p["read_gbs_2t"] for p in probes]
    py = json.loads(args.pytorch.read_text())
    cc = json.loads(args.celeriac.read_text()) if args.celeriac and args.celeriac.exists() else None
    cfg = json.loads(args.config.read_text())

    gflop = vision_gflop(cfg["vision_config"])
    enc_len = 577 + len(py["prompt_ids"])
    w_bytes, kv_bytes = decode_bytes(cfg["text_config"], enc_len)
    # Ceilings at the thread count both sides ran with (run.sh: one per core given).
    t = "1t" if py["threads"] == 1 else "2t"
    peak = probe[f"gemm_gflops_{t}"]
    bw = probe[f"read_gbs_{t}"]
    bound_s = w_bytes / (bw * 1e9)
    bound_kv_s = (w_bytes + kv_bytes) / (bw * 1e9)

    print(f"machine: GEMM peak {probe['gemm_gflops_1t']:.1f} GFLOP/s (1 thread), "
          f"{probe['gemm_gflops_2t']:.1f} (2 threads); read {probe['read_gbs_1t']:.1f} GB/s "
          f"(1 thread), {probe['read_gbs_2t']:.1f} (2 threads)"
          + (f"; best of probes reading {', '.join(f'{r:.1f}' for r in probe_reads)} GB/s"
             if len(probes) > 1 else "")
          + (f"; over 4 KiB pages {probe['read_gbs_2t_4k_pages']:.1f} GB/s (2 threads)"
             if "read_gbs_2t_4k_pages" in probe else ""))
    print(f"work: vision {gflop:.0f} GFLOP; decode step reads {w_bytes / 1e6:.0f} MB of fp32 weights"
          f" -> bound {bound_s * 1e3:.1f} ms ({(w_bytes + kv_bytes) / 1e6:.0f} MB with the "
          f"cross-attention cache: {bound_kv_s * 1e3:.1f} ms)")
    print(f"request: {py['task']} on {py['image']}, beams {py['beams']}, "
          f"{py['new_tokens']} new tokens, {py['threads']} threads, best of "
          f"{len(py['run_totals_s'])} runs after a warm-up\n")

    rows = [("load (s)", "load_s", 1, None), ("preprocess (ms)", "preprocess_s", 1e3, "best"),
            ("vision encoder (ms)", "vision_s", 1e3, "best"),
            ("projection (ms)", "projection_s", 1e3, "best"),
            ("text encoder (ms)", "encoder_s", 1e3, "best"),
            ("decode per token (ms)", "decode_per_token_s", 1e3, "best"),
            ("  decoder start (ms)", "decoder_start_s", 1e3, "best"),
            ("  decode step (ms)", "decode_step_median_s", 1e3, "best"),
            ("  decoder forward (ms)", "decoder_forward_per_step_s", 1e3, "best"),
            ("  first step (ms)", "decoder_first_step_s", 1e3, "best"),
            ("decode total (s)", "decode_s", 1, "best"),
            ("total (s)", "total_s", 1, "best"), ("first run total (s)", "total_s", 1, "first"),
            ("peak RSS (MiB)", "peak_rss_mib", 1, None)]

    def get(side, key, where):
        if side is None:
            return None
        src = side[where] if where else side
        return src.get(key)

    print(f"{'':24} {'pytorch':>10} {'celeriac':>10} {'speed-up':>9}")
    table = {}
    for label, key, scale, where in rows:
        a, b = get(py, key, where), get(cc, key, where)
        ratio = (a / b) if (a is not None and b) else None
        if key == "peak_rss_mib" and ratio:
            ratio = b / a  # share of PyTorch's memory, not a speed-up
        table[label] = {"pytorch": a, "celeriac": b, "ratio": ratio}
        fa = f"{a * scale:10.1f}" if a is not None else f"{'-':>10}"
        fb = f"{b * scale:10.1f}" if b is not None else f"{'-':>10}"
        fr = f"{ratio:8.2f}x" if ratio else f"{'-':>9}"
        if key == "peak_rss_mib" and ratio:
            fr = f"{ratio * 100:7.0f}% "
        print(f"{label:24} {fa} {fb} {fr}")

    print(f"\n{'CPU time, all threads':24} {'pytorch':>10} {'celeriac':>10}")
    for label, key in (("vision encoder (s)", "vision_cpu_s"), ("text encoder (s)", "encoder_cpu_s"),
                       ("decode (s)", "decode_cpu_s"), ("total (s)", "total_cpu_s")):
        a, b = get(py, key, "best"), get(cc, key, "best")
        fa = f"{a:10.2f}" if a is not None else f"{'-':>10}"
        fb = f"{b:10.2f}" if b is not None else f"{'-':>10}"
        print(f"{label:24} {fa} {fb}")
    print()

    share = {}
    for name, side in (("pytorch", py), ("celeriac", cc)):
        if side:
            rate = gflop / side["best"]["vision_s"]
            share[name] = rate / peak
            per_tok = side["best"]["decode_per_token_s"]
            step = side["best"].get("decode_step_median_s")
            cpu = side["best"].get("vision_cpu_s")
            # Per busy core against the 1-thread peak: what the code does when it runs, apart
            # from the time other jobs on the machine took the cores.
            per_core = (f" ({gflop / cpu:.1f} GFLOP/s per busy core = "
                        f"{gflop / cpu / probe['gemm_gflops_1t'] * 100:.0f}% of the 1-thread peak)"
                        if cpu else "")
            print(f"{name}: vision {rate:.1f} GFLOP/s{per_core} = {share[name] * 100:.0f}% of the GEMM peak; "
                  f"decode per token {per_tok * 1e3:.1f} ms = {per_tok / bound_s:.2f}x the bound"
                  + (f"; decode step {step * 1e3:.1f} ms = {step / bound_s:.2f}x" if step else ""))

    bf16 = json.loads(args.bf16.read_text()) if args.bf16 and args.bf16.exists() else None
    if bf16:
        for key in ("t1", "t2"):
            b = bf16[key]
            print(f"decode-step products alone, {key[1]} thread(s): oneDNN fp32 {b['dnnl_fp32_ms']:.1f} ms, "
                  f"nn::linear fp32 {b['own_fp32_ms']:.1f} ms, bf16 weights {b['own_bf16_ms']:.1f} ms "
                  f"({b['own_bf16_ms'] / b['own_fp32_ms']:.2f}x the fp32 loop)")
        print(f"  bounds at the probe's {t[0]}-thread read rate: fp32 {w_bytes / bw / 1e6:.1f} ms, "
              f"bf16 {w_bytes / 2 / bw / 1e6:.1f} ms")
    cb = (json.loads(args.celeriac_bf16.read_text())
          if args.celeriac_bf16 and args.celeriac_bf16.exists() else None)
    if cb and cc:
        same_fp32 = cb["token_ids"] == cc["token_ids"]
        print(f"celeriac with bf16 decoder weights (measured): total {cb['best']['total_s']:.2f} s = "
              f"{py['best']['total_s'] / cb['best']['total_s']:.2f}x PyTorch fp32; decode per token "
              f"{cb['best']['decode_per_token_s'] * 1e3:.1f} ms = "
              f"{cb['best']['decode_per_token_s'] / (bound_s / 2):.2f}x its bf16 bound; peak RSS "
              f"{cb['peak_rss_mib']:.0f} MiB; load {cb['load_s']:.2f} s; tokens "
              f"{'identical to' if same_fp32 else 'DIFFERENT from'} fp32")

    ca = (json.loads(args.celeriac_bf16_all.read_text())
          if args.celeriac_bf16_all and args.celeriac_bf16_all.exists() else None)
    if ca and cc:
        print(f"celeriac --bf16 (bf16 encoder GEMMs: {'on' if ca.get('bf16_encoders') else 'off'}): "
              f"total {ca['best']['total_s']:.2f} s = "
              f"{py['best']['total_s'] / ca['best']['total_s']:.2f}x PyTorch fp32; vision "
              f"{ca['best']['vision_s']:.2f} s (fp32 {cc['best']['vision_s']:.2f} s); peak RSS "
              f"{ca['peak_rss_mib']:.0f} MiB; tokens "
              f"{'identical to' if ca['token_ids'] == cc['token_ids'] else 'DIFFERENT from'} fp32")

    flags = cpu_flags()
    has_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    goals = []
    if cc:
        step_bw = cc["best"].get("read_gbs_beside_decode") or bw
        step_bound_s = w_bytes / (step_bw * 1e9)
        same = cc["token_ids"] == py["token_ids"]
        speed = py["best"]["total_s"] / cc["best"]["total_s"]
        goals = [
            ("fp32 end to end >= 1.5x PyTorch, identical tokens", speed >= 1.5 and same,
             f"{speed:.2f}x, tokens {'identical' if same else 'DIFFER'}"),
            ("vision encoder >= 70% of the GEMM peak", share["celeriac"] >= 0.7,
             f"{share['celeriac'] * 100:.0f}%"),
            decode_goal(cc, step_bound_s, step_bw, bound_s),
            ("peak RSS <= half of PyTorch's", cc["peak_rss_mib"] <= py["peak_rss_mib"] / 2,
             f"{cc['peak_rss_mib']:.0f} / {py['peak_rss_mib']:.0f} MiB"),
            ("load < 1 s (warm page cache)", cc["load_s"] < 1.0, f"{cc['load_s']:.2f} s"),
        ]
        if not same:
            first_diff = next((i for i, (x, y) in enumerate(zip(py["token_ids"], cc["token_ids"]))
                               if x != y), min(len(py["token_ids"]), len(cc["token_ids"])))
            print(f"tokens differ from position {first_diff}: pytorch "
                  f"{py['token_ids'][first_diff:first_diff + 8]}, celeriac "
                  f"{cc['token_ids'][first_diff:first_diff + 8]}")
    print()
    for name, ok, detail in goals:
        print(f"  [{'met' if ok else 'NOT met'}] {name}: {detail}")
    if not cc:
        print("  (celeriac side not built yet: no goals evaluated)")
    if has_bf16 and ca and ca.get("bf16_encoders"):
        speed_bf16 = py["best"]["total_s"] / ca["best"]["total_s"]
        print(f"  [{'met' if speed_bf16 >= 3 else 'NOT met'}] bf16 >= 3x PyTorch fp32: "
              f"{speed_bf16:.2f}x (--bf16; token agreement on the golden set: "
              "celeriac_florence_generate_model_test prints it)")
    else:
        print(f"  [{'to do' if has_bf16 else 'n/a'}] bf16 >= 3x PyTorch fp32: "
              + ("this CPU has AVX-512 BF16/AMX; run with the --bf16 side built" if has_bf16 else
                 "this CPU has no AVX512_BF16 or AMX, so oneDNN builds no bf16 matmul here; bf16 "
                 "weights can only halve the bytes a decode step reads (measured above)"))

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "probe": probe, "pytorch": py, "celeriac": cc, "bf16": bf16, "celeriac_bf16": cb,
            "celeriac_bf16_all": ca,
            "table": table,
            "vision_gflop": gflop, "decode_weight_bytes": w_bytes, "decode_cross_kv_bytes": kv_bytes,
            "decode_bound_s": bound_s, "vision_share_of_peak": share,
            "goals": [{"goal": g, "met": ok, "value": v} for g, ok, v in goals],
        }, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
