"""`probekit extract --model MODEL (--data CSV | --prompts FILE.jsonl) --hooks HOOKS --position RULE --out STORE`:
activations into a resumable store folder; under `torchrun --nproc-per-node N` the shards are split
between the ranks (logic in probekit.extract_study and probekit.distributed)."""
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
    p.add_argument("--model", required=True, help="gpt2-style name, path:DIR (local checkpoint) or toy:RUN_DIR")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", default="", metavar="CSV", help="word CSV (default: the bundled data/words.csv)")
    src.add_argument("--prompts", default="", metavar="FILE.jsonl",
                     help='JSON lines: {"text": "...", other keys = metadata} or {"segments": [[name, text], ...]}')
    p.add_argument("--concept", default="all", metavar="AXIS[,AXIS...]",
                   help="word CSV: keep words labelled on these axes (default all)")
    p.add_argument("--template", action="append", default=None, metavar="TEXT",
                   help="word CSV: template with {word} once (repeatable); default 'Here is a word: {word}'")
    p.add_argument("--hooks", default="all",
                   help="as probekit probe --layers: all (resid_pre 0 + every resid_post), layer numbers, or hook "
                        "names / patterns (resid_post, pattern:3, blocks.*.hook_attn_out)")
    p.add_argument("--position", default="",
                   help="position rule (default: word for a word CSV, last for a prompts file)")
    p.add_argument("--shard-size", type=int, default=2048, help="prompts per shard (default 2048)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu, cuda (under torchrun: cuda:LOCAL_RANK per rank)")
    p.add_argument("--dtype", default="float32", help="weights' dtype: float32, bfloat16 or float16 (stored: float32)")
    p.add_argument("--device-map", default="", help="auto or balanced: accelerate spreads the layers over the devices")
    p.add_argument("--n-devices", type=int, default=None, help="split the model over this many GPUs")
    p.add_argument("--max-memory", default="", metavar="DEV=SIZE,...",
                   help="per-device budget for --device-map, e.g. 0=20GiB,1=20GiB,cpu=64GiB")
    p.add_argument("--compatibility-mode", action="store_true",
                   help="TransformerLens compatibility mode (folded LayerNorm, centred weights) instead of raw weights")
    p.add_argument("--dist-timeout", type=float, default=1440.0, metavar="MINUTES",
                   help="torch.distributed collective timeout (the final barrier waits for the slowest rank)")
    p.add_argument("--out", required=True, help="store folder (new, or one to resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (per-shard lines still print)")
    return p


def run(args) -> int:
    from ..extract_study import run_extract

    res = run_extract(args.model, args.out, data=args.data or None, prompts=args.prompts or None,
                      concepts=args.concept, templates=args.template, hooks=args.hooks, position=args.position or None,
                      shard_size=args.shard_size, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                      device_map=args.device_map or None, n_devices=args.n_devices, max_memory=args.max_memory or None,
                      compatibility_mode=args.compatibility_mode, progress=not args.no_progress,
                      dist_timeout_min=args.dist_timeout)
    if res["rank"] == 0:
        print(f"store {res['store_dir']}: {res['n']} prompts x {len(res['hooks'])} hooks in {res['n_shards']} shards "
              f"(position {res['position']}, dtype {res['model'].get('dtype', 'float32')}); this run computed "
              f"{res['n_pending_before']} shard(s) on {res['world_size']} process(es)")
    return 0
