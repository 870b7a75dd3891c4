"""One generation of the tiny checkpoints' reference record (reference/generations.json and
reference/parsed.json, written by transformers and Microsoft's processor), for the tests that
compare celeriac's output with it. Standard library only."""
import json
from pathlib import Path

TINY = Path(__file__).resolve().parent


def reference(pair_id, run_name):
    """(pair, run, parsed result as JSON text) of pair `pair_id` under the generate() settings
    named `run_name`."""
    gens = json.loads((TINY / "reference" / "generations.json").read_text())
    pair = next(p for p in gens["pairs"] if p["pair"] == pair_id)
    run = next(r for r in pair["runs"] if r["name"] == run_name)
    parsed = json.loads((TINY / "reference" / "parsed.json").read_text())
    rec = next(r for r in parsed["records"] if r["pair"] == pair_id and r["run"] == run_name)
    return pair, run, rec["result"]
