#!/usr/bin/env python3
"""MTFM (tiny, small), MMoE and LightGBM over several seeds on synthetic:market, MovieLens and the default synthetic,
on two re-cuts of MovieLens written as CSV logs with a schema (ml-decade, ml-hour: scenarios by the movie's
release decade or by the hour of the rating; scripts/movielens_recut.py), and on an impression-only log with known
probabilities (impressions: scripts/impressions_log.py, which prints its Bayes AUC).

Usage: python3 scripts/compare.py [--datasets market,movielens,synthetic,ml-decade,ml-hour,impressions] [--models tiny,small,mmoe,lightgbm]
                                  [--seeds 1,2,3] [--market synthetic:market] [--movielens DIR] [--epochs N] [--out DIR]
                                  [--report-only]
MTFM_DLL overrides the mtfm.dll used. Runs `mtfm train` once per (dataset, model, seed) unless runs/<name>/metrics.json exists, then prints one markdown
table per dataset: click AUC / GAUC per scenario (mean over the seeds that finished), with the Bayes AUC where known
and, on generated logs, each model's AUC expected over label draws from the true probabilities.
"""
import argparse, json, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MTFM = os.environ.get("MTFM_DLL", os.path.join(ROOT, "Mtfm.Cli", "bin", "Release", "net10.0", "mtfm.dll"))


def model_args(model):
    return ["--model", "lightgbm"] if model == "lightgbm" else ["--preset", model]


def run(out, name, args, report_only=False):
    path = os.path.join(out, name, "metrics.json")
    if not os.path.exists(path):
        if report_only:
            return None
        t = time.time()
        r = subprocess.run(["dotnet", MTFM, "train", "--out", out, "--name", name, *args], stdout=subprocess.DEVNULL)
        print(f"  ran {name} ({time.time() - t:.0f} s, rc {r.returncode}): {' '.join(args)}", file=sys.stderr, flush=True)
        if r.returncode != 0:
            return None
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="market,movielens,synthetic")
    ap.add_argument("--models", default="tiny,small,mmoe,lightgbm")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--market", default="synthetic:market")
    ap.add_argument("--movielens", default=os.path.join(ROOT, "..", "..", "shared", "data", "movielens-latest-small"))
    ap.add_argument("--epochs", type=int, default=None, help="MTFM/MMoE epochs (default: the CLI's)")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "compare"))
    ap.add_argument("--report-only", action="store_true", help="print the tables of the runs that exist; run nothing")
    a = ap.parse_args()
    data = {"market": ["--data", a.market], "movielens": ["--data", "movielens:" + os.path.abspath(a.movielens)], "synthetic": ["--data", "synthetic"]}
    for axis in ("decade", "hour"):
        if f"ml-{axis}" in a.datasets.split(","):
            recut = os.path.join(a.out, "data")
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "movielens_recut.py"), "--axis", axis,
                            "--movielens", os.path.abspath(a.movielens), "--out", recut], check=True, stdout=subprocess.DEVNULL)
            data[f"ml-{axis}"] = ["--data", os.path.join(recut, f"ml-{axis}.csv"), "--schema", os.path.join(recut, f"ml-{axis}.schema.json")]
    if "impressions" in a.datasets.split(","):
        logs = os.path.join(a.out, "data")
        if not os.path.exists(os.path.join(logs, "impressions.csv")):
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "impressions_log.py"), "--out", logs], check=True)
        data["impressions"] = ["--data", os.path.join(logs, "impressions.csv"), "--schema", os.path.join(logs, "impressions.schema.json")]
    seeds = [int(s) for s in a.seeds.split(",")]
    for ds in a.datasets.split(","):
        results = {}
        for model in a.models.split(","):
            for seed in seeds:
                args = [*data[ds], *model_args(model), "--seed", str(seed)]
                if a.epochs and model != "lightgbm":
                    args += ["--epochs", str(a.epochs)]
                tag = ds if ds != "market" else a.market.split(":")[-1]
                m = run(a.out, f"{tag}-{model}-s{seed}" + (f"-e{a.epochs}" if a.epochs and model != "lightgbm" else ""), args, a.report_only)
                if m is not None:
                    results.setdefault(model, []).append(m)
        if not results:
            continue
        any_m = next(iter(results.values()))[0]
        scen = [r["scenario"] for r in any_m["metrics"] if r["task"] == "click"]
        title = {"movielens": "movielens (ml-latest-small)", "ml-decade": "MovieLens re-cut by release decade (CSV + schema)",
                 "ml-hour": "MovieLens re-cut by hour of the rating (CSV + schema)",
                 "impressions": "impression-only log (scripts/impressions_log.py, CSV + schema)"}.get(ds, data[ds][1])
        print(f"\n### {title}: test click AUC / GAUC, mean of seeds")
        print("| model | seeds | " + " | ".join(scen) + " |")
        print("|---|---:|" + "---:|" * len(scen))
        for model, ms in results.items():
            cells = []
            for s in scen:
                rows = [r for m in ms for r in m["metrics"] if r["scenario"] == s and r["task"] == "click"]
                auc = sum(r["auc"] for r in rows) / len(rows)
                gauc = sum(r["gauc"] for r in rows) / len(rows)
                cells.append(f"{auc:.4f} / {gauc:.4f}")
            print(f"| {model} | {len(ms)} | " + " | ".join(cells) + " |")
        bayes = [next((r.get("bayes_optimal_auc") for r in any_m["metrics"] if r["scenario"] == s and r["task"] == "click"), None) for s in scen]
        if all(isinstance(b, (int, float)) and b == b for b in bayes):
            print("| Bayes (true p) | | " + " | ".join(f"{b:.4f}" for b in bayes) + " |")
        # Generated logs: each model's AUC expected over label draws from the true probabilities (no test-draw noise).
        for model, ms in results.items():
            rows = [[r.get("expected_auc") for m in ms for r in m["metrics"] if r["scenario"] == s and r["task"] == "click"] for s in scen]
            if all(v and all(isinstance(x, (int, float)) for x in v) for v in rows):
                print(f"| {model}, expected AUC | {len(ms)} | " + " | ".join(f"{sum(v) / len(v):.4f}" for v in rows) + " |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
