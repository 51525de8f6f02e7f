#!/usr/bin/env python3
"""Runs the model-quality and throughput comparisons of the MTFM issue with the `mtfm` CLI and prints tables.

Usage: python3 scripts/experiments.py [synthetic|movielens|all] [--seeds 1,2,3] [--preset tiny|small] [--movielens DIR] [--out DIR]
Every number comes from the runs' metrics.json files (test window; GAUC/AUC per scenario and task).
"""
import argparse, json, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MTFM = os.path.join(ROOT, "Mtfm.Cli", "bin", "Release", "net10.0", "mtfm.dll")


def run(out, name, *args):
    path = os.path.join(out, name, "metrics.json")
    if not os.path.exists(path):
        t = time.time()
        subprocess.run(["dotnet", MTFM, "train", "--out", out, "--name", name, *args], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"  ran {name} ({time.time() - t:.0f} s): {' '.join(args)}", file=sys.stderr)
    with open(path) as f:
        return json.load(f)


def cell(m, scenario, task, key):
    for r in m["metrics"]:
        if r["scenario"] == scenario and r["task"] == task:
            return r[key]
    return float("nan")


def setting(m, name):
    for s in m["settings"]:
        if s["name"] == name:
            return float(s["value"])
    return float("nan")


def synthetic(out):
    default = run(out, "syn-default")
    hta = run(out, "syn-hta31", "--target-layers", "3")
    full = run(out, "syn-full4", "--target-layers", "3", "--attention", "full")
    user2 = run(out, "syn-user-e2", "--epochs", "2")
    expo2 = run(out, "syn-exposure-e2", "--epochs", "2", "--aggregation", "exposure")
    mmoe = run(out, "syn-mmoe", "--preset", "mmoe")
    print("\n## Synthetic default: test CTR metrics (pooled over scenarios)")
    print("| run | AUC | GAUC | train s | instances/s | exposures/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in [("tiny (HTA 1:1), default", default), ("HTA 3:1 (1 full + 3 target)", hta), ("full attention, 4 layers", full),
                    ("user-level, 2 epochs", user2), ("per-exposure, 2 epochs", expo2), ("MMoE baseline", mmoe)]:
        print(f"| {name} | {cell(m, '(all)', 'click', 'auc'):.4f} | {cell(m, '(all)', 'click', 'gauc'):.4f} | {m['train_seconds']:.1f} | "
              f"{setting(m, 'instances/s'):.0f} | {m['exposures_per_second']:.0f} |")
    print(f"\nHTA 3:1 − full GAUC: {100 * (cell(hta, '(all)', 'click', 'gauc') - cell(full, '(all)', 'click', 'gauc')):+.2f} pp; "
          f"instances/s ratio HTA/full: {setting(hta, 'instances/s') / setting(full, 'instances/s'):.2f}")
    print(f"user-level − per-exposure AUC (2 epochs each): {100 * (cell(user2, '(all)', 'click', 'auc') - cell(expo2, '(all)', 'click', 'auc')):+.2f} pp; "
          f"exposures/s ratio: {user2['exposures_per_second'] / expo2['exposures_per_second']:.2f}")
    print("\n| scenario | AUC | Bayes AUC | gap (pp) |\n|---|---:|---:|---:|")
    for r in default["metrics"]:
        if r["task"] == "click" and r["scenario"] != "(all)":
            print(f"| {r['scenario']} | {r['auc']:.4f} | {r['bayes_optimal_auc']:.4f} | {100 * (r['bayes_optimal_auc'] - r['auc']):.2f} |")


def movielens(out, seeds, data, preset):
    spec = "movielens:" + data
    doms = None
    rows = {}
    for s in seeds:
        mt = run(out, f"ml-mtfm-{preset}-s{s}", "--data", spec, "--seed", str(s), "--preset", preset)
        mm = run(out, f"ml-mmoe-s{s}", "--data", spec, "--seed", str(s), "--preset", "mmoe")
        doms = doms or [r["scenario"] for r in mt["metrics"] if r["task"] == "click" and r["scenario"] != "(all)"]
        for d in doms:
            rows.setdefault(d, {"mtfm": [], "mmoe": []})
            rows[d]["mtfm"].append(cell(mt, d, "click", "gauc"))
            rows[d]["mmoe"].append(cell(mm, d, "click", "gauc"))
    smallest = min(doms, key=lambda d: next(r["exposures"] for r in mt["metrics"] if r["scenario"] == d and r["task"] == "click"))
    alone = [cell(run(out, f"ml-alone-{preset}-{smallest}-s{s}", "--data", spec, "--seed", str(s), "--preset", preset,
                      "--scenarios", smallest), smallest, "click", "gauc") for s in seeds]
    avg = lambda xs: sum(xs) / len(xs)
    print(f"\n## MovieLens ({data}), MTFM preset {preset}, test CTR GAUC, mean of seeds {seeds}")
    print("| domain | MTFM | MMoE | MTFM − MMoE (pp) |\n|---|---:|---:|---:|")
    for d in doms:
        print(f"| {d} | {avg(rows[d]['mtfm']):.4f} | {avg(rows[d]['mmoe']):.4f} | {100 * (avg(rows[d]['mtfm']) - avg(rows[d]['mmoe'])):+.2f} |")
    print(f"\nsmallest domain '{smallest}': MTFM on all domains {avg(rows[smallest]['mtfm']):.4f} vs trained alone {avg(alone):.4f} "
          f"({100 * (avg(rows[smallest]['mtfm']) - avg(alone)):+.2f} pp)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", nargs="?", default="all", choices=["synthetic", "movielens", "all"])
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--movielens", default=os.path.join(ROOT, "..", "shared", "data", "movielens-latest-small"))
    p.add_argument("--preset", default="tiny", help="MTFM preset for the MovieLens comparison (the MMoE baseline is fixed)")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "experiments"))
    a = p.parse_args()
    if not os.path.exists(MTFM):
        sys.exit(f"build first: dotnet build -c Release {ROOT}/Mtfm.sln")
    if a.what in ("synthetic", "all"):
        synthetic(a.out)
    if a.what in ("movielens", "all"):
        movielens(a.out, [int(s) for s in a.seeds.split(",")], os.path.abspath(a.movielens), a.preset)


if __name__ == "__main__":
    main()
