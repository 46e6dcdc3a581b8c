"""`probekit extract --model MODEL (--data CSV | --prompts FILE.jsonl) --hooks HOOKS --position RULE --out STORE`:
activations into a resumable store folder; under `torchrun --nproc-per-node N` the shards are split
between the ranks (flags in probekit.options.EXTRACT; logic in probekit.extract_study and probekit.distributed)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "extract",
        help="extract activations into a resumable store folder (data parallel under torchrun)",
        description="Run MODEL on word prompts (a word CSV in templates) or a JSON-lines prompts file and write the "
                    "activations of HOOKS at one position rule into STORE (safetensors shards + manifest.json + "
                    "rows.json). Rerunning the same command computes only missing shards. Under `torchrun "
                    "--nproc-per-node N -m probekit extract ...` each rank writes its share of the shards and rank 0 "
                    "completes the manifest. Exit 2 on bad input, before any work.",
    )
    from ..options import EXTRACT

    EXTRACT.add_arguments(p, required=("model", "out"))
    return p


def run(args) -> int:
    from ..extract_study import run_extract
    from ..options import EXTRACT, call_with_options

    opts = EXTRACT.from_args(args)
    res = call_with_options(run_extract, {k: v for k, v in opts.items() if k != "no_progress"}, EXTRACT,
                            progress=not opts["no_progress"])
    if res["rank"] == 0:
        print(f"store {res['store_dir']}: {res['n']} prompts x {len(res['hooks'])} hooks in {res['n_shards']} shards "
              f"(position {res['position']}, dtype {res['model'].get('dtype', 'float32')}); this run computed "
              f"{res['n_pending_before']} shard(s) on {res['world_size']} process(es)")
    return 0
