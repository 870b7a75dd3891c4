"""`celeriac caption` end to end on the tiny random-weight Florence-2 checkpoints: a successful run
must print what the reference stack printed (tests/data/florence-tiny/reference: generations.json,
parsed.json), and bad input must end in one clear error line and a non-zero exit, never a crash.

Usage: test_caption_cli.py CELERIAC_BIN DATA_DIR   (run by CTest; standard library only)
   or: CELERIAC_BIN=... CELERIAC_DATA=... pytest tests/cli/test_caption_cli.py
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

if __name__ == "__main__":
    BINARY, DATA = sys.argv[1], Path(sys.argv[2])
else:
    BINARY = os.environ.get("CELERIAC_BIN", "build/celeriac")
    DATA = Path(os.environ.get("CELERIAC_DATA", Path(__file__).resolve().parents[1] / "data"))
TINY = DATA / "florence-tiny"
MODEL = TINY / "native-safetensors-fp32"
sys.path.insert(0, str(TINY))
from reference_lookup import reference  # noqa: E402


def caption(*args, timeout=300):
    return subprocess.run([BINARY, "caption", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def split_task(task):
    end = task.index(">") + 1
    return task[:end], task[end:]


def assert_clean_failure(out, *words):
    """Non-zero exit from the program itself (no signal), one error line naming the problem."""
    assert out.returncode > 0, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])
    assert out.stdout == "", out.stdout


def run_like_reference(pair_id, run_name, model, *extra):
    pair, run, parsed = reference(pair_id, run_name)
    task, text = split_task(pair["task"])
    args = [TINY / "images" / pair["image"], "--task", task, "--model", model, "--raw",
            "--num-beams", run["generate_kwargs"]["num_beams"],
            "--max-new-tokens", run["generate_kwargs"]["max_new_tokens"], *extra]
    if text:
        args += ["--text", text]
    out = caption(*args)
    assert out.returncode == 0, out.stderr
    ids, decoded, result = out.stdout.splitlines()
    assert json.loads(ids) == run["token_ids"]
    assert json.loads(decoded) == run["text"]
    assert result == parsed  # byte for byte json.dumps of the reference's dict


def test_od_beam_search_matches_reference():
    run_like_reference("p05", "beam3", MODEL)


def test_grounding_with_text_greedy_matches_reference():
    run_like_reference("p08", "greedy", MODEL)


def test_bf16_decoder_weights_on_bf16_exact_weights():
    # The fixture's weights are exactly representable in bf16, so the tokens must not change.
    run_like_reference("p05", "beam3", MODEL, "--bf16-decoder")


def test_bf16_everywhere_gives_a_result_of_the_task():
    # --bf16 also rounds the encoders' activations where the CPU has bf16 GEMMs, so the tokens may
    # move; the run must still end in a well-formed result of the asked task with its ids.
    pair, run, _ = reference("p05", "beam3")
    task, _ = split_task(pair["task"])
    out = caption(TINY / "images" / pair["image"], "--task", task, "--model", MODEL, "--raw",
                  "--max-new-tokens", 40, "--bf16")
    assert out.returncode == 0, out.stderr
    ids, decoded, result = out.stdout.splitlines()
    assert json.loads(ids)[0] == run["token_ids"][0] and len(json.loads(ids)) > 1
    assert isinstance(json.loads(decoded), str)
    assert list(json.loads(result)) == [task]
    # Where the CPU has no bf16 GEMMs the encoders ran in fp32, and stderr says so.
    with open("/proc/cpuinfo") as f:
        has_bf16 = any(flag in f.read().split() for flag in ("avx512_bf16", "amx_bf16"))
    assert ("note: --bf16" in out.stderr) == (not has_bf16), out.stderr


def test_folder_without_tokenizer_takes_one():
    run_like_reference("p16", "beam3", TINY / "remote-sharded-bf16", "--tokenizer",
                       TINY / "remote-bin-fp16")


def test_default_output_is_the_parsed_result_only():
    _, _, parsed = reference("p02", "beam3")
    out = caption(TINY / "images" / "image0.png", "--task", "<CAPTION>", "--model", MODEL,
                  "--max-new-tokens", 40)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [parsed]


def test_unknown_task():
    out = caption(TINY / "images" / "image0.png", "--task", "<FLY>", "--model", MODEL)
    assert_clean_failure(out, "<FLY>")


def test_task_missing_its_text():
    out = caption(TINY / "images" / "image0.png", "--task", "<CAPTION_TO_PHRASE_GROUNDING>",
                  "--model", MODEL)
    assert_clean_failure(out)


def test_not_an_image():
    out = caption(MODEL / "config.json", "--task", "<OD>", "--model", MODEL)
    assert_clean_failure(out, "image")


def test_missing_image_file():
    out = caption(TINY / "images" / "no-such.png", "--task", "<OD>", "--model", MODEL)
    assert_clean_failure(out, "image")


def test_truncated_image():
    data = (TINY / "images" / "image1.png").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "half.png"
        path.write_bytes(data[: len(data) // 2])
        out = caption(path, "--task", "<OD>", "--model", MODEL)
    assert_clean_failure(out, "image")


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_hundred_megapixel_image():
    # A valid PNG header for 10,000 x 10,000 grey pixels: refused before any pixel is allocated.
    ihdr = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 0, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
           + png_chunk(b"IDAT", zlib.compress(b"\x00" * 10_001)) + png_chunk(b"IEND", b""))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "huge.png"
        path.write_bytes(png)
        out = caption(path, "--task", "<OD>", "--model", MODEL)
    assert_clean_failure(out, "image")


def test_checkpoint_missing_a_tensor():
    # Rename one tensor in the safetensors header (same length, so the file stays consistent).
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        shutil.copytree(MODEL, folder)
        path = folder / "model.safetensors"
        data = bytearray(path.read_bytes())
        (n,) = struct.unpack("<Q", data[:8])
        header = data[8:8 + n].decode()
        name = next(k for k in json.loads(header) if k.endswith("decoder.layers.0.fc1.weight"))
        data[8:8 + n] = header.replace(f'"{name}"', f'"{name[:-1]}X"').encode()
        path.write_bytes(bytes(data))
        out = caption(TINY / "images" / "image0.png", "--task", "<OD>", "--model", folder)
    assert_clean_failure(out, "fc1")


def test_bad_generation_setting():
    out = caption(TINY / "images" / "image0.png", "--task", "<OD>", "--model", MODEL,
                  "--generation", "early_stopping=sometimes")
    assert_clean_failure(out, "early_stopping")


def test_more_new_tokens_than_positions():
    out = caption(TINY / "images" / "image0.png", "--task", "<OD>", "--model", MODEL,
                  "--max-new-tokens", 2000)
    assert_clean_failure(out, "max-new-tokens")


def main():
    tests = [(name, fn) for name, fn in sorted(globals().items()) if name.startswith("test_")]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"ok   {name}")
        except Exception as e:  # report every test, then fail once
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"{len(tests) - failed}/{len(tests)} passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
