#!/usr/bin/env python3
"""An impression-only event log with known click probabilities: a log shaped unlike the built-in generators, to try the
default recipe on (issue 9, "logs we did not design"). Python standard library only.

Usage: python3 scripts/impressions_log.py --out DIR [--users 6000] [--seed 7]
Writes DIR/impressions.csv and DIR/impressions.schema.json, then prints the Bayes AUC (the true probabilities) of the
test window per scenario and of three oracles that each lack one term.

The log: 14 days, three scenarios, no behaviour events at all (every row is an exposure; `mtfm train` adds click
feedback tokens on its own), one task (click), unicode user keys, string item keys.
  home, related: pages of 8 items at one second from one catalogue (6,000 items, Zipf-like popularity), a numeric
      `position` 0..7 with a click effect of -0.25 per slot;
  push: one notification per session from 200 campaigns, about 2 % of the exposures (a small scenario with an item
      feature nobody else has).
Click logit = scenario bias + position + item (campaign) quality + user bias + a user x category affinity + a latent
user x item factor (8 dimensions; home/related only) + 0.9 when the user clicked the category in the last hour
+ an evening effect (push). Users' session counts are log-normal (most light, some heavy); each user has a
home/related mix of their own. Split: validation from day 12, test from day 13 (daily windows).
"""
import argparse, bisect, json, math, os, random


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def auc(scores, labels):
    pairs = sorted(zip(scores, labels))
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2 * sum(y for _, y in pairs[i:j])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def generate(users, seed):
    rng = random.Random(seed)
    items, cats, dim, camps, days, t0 = 6000, 40, 8, 200, 14, 1_700_000_000
    aff = [[rng.gauss(0, 0.8) for _ in range(cats)] for _ in range(users)]
    uvec = [[rng.gauss(0, 0.5) for _ in range(dim)] for _ in range(users)]
    ivec = [[rng.gauss(0, 0.5) for _ in range(dim)] for _ in range(items)]
    ubias = [rng.gauss(0, 0.5) for _ in range(users)]
    icat = [rng.randrange(cats) for _ in range(items)]
    iq = [rng.gauss(0, 0.7) for _ in range(items)]
    popularity = [1.0 / (k + 1) ** 1.1 for k in range(items)]
    rng.shuffle(popularity)
    cumulative, total = [], 0.0
    for w in popularity:
        total += w
        cumulative.append(total)
    cq = [rng.gauss(0, 0.8) for _ in range(camps)]
    ccat = [rng.randrange(cats) for _ in range(camps)]
    rows = []  # (time, user, scenario, campaign, item, category, device, hour, position, clicked, p, logit terms...)
    for u in range(users):
        sessions = min(int(math.exp(rng.gauss(1.2, 1.2))) + 1, 300)
        home_share = rng.random()
        key = f"usér-{(u * 7919) % 100003:05d}"
        device = ("ios", "android", "web")[u % 3]
        last_click = {}
        for t in sorted(rng.randrange(days * 86400) for _ in range(sessions)):
            hour = (t % 86400) // 3600
            r = rng.random()
            if r < 0.12:
                c = rng.randrange(camps)
                cat = ccat[c]
                rec = 0.9 if t - last_click.get(cat, -10**9) < 3600 else 0.0
                terms = (cq[c], 0.0, 0.8 * aff[u][cat], ubias[u], rec)
                logit = -2.6 + sum(terms) + (0.4 if 18 <= hour <= 22 else 0.0)
                p = sigmoid(logit)
                y = int(rng.random() < p)
                rows.append((t0 + t, key, "push", f"camp{c}", "", f"cat{cat}", device, hour, "", y, p, logit) + terms)
                if y:
                    last_click[cat] = t
                continue
            scenario = "home" if r < 0.12 + 0.88 * home_share else "related"
            page = []
            while len(page) < 8:
                it = bisect.bisect_left(cumulative, rng.random() * total)
                if it < items and it not in page:
                    page.append(it)
            clicked = []
            for k, it in enumerate(page):
                cat = icat[it]
                rec = 0.9 if t - last_click.get(cat, -10**9) < 3600 else 0.0
                uv = 1.2 * sum(a * b for a, b in zip(uvec[u], ivec[it]))
                terms = (iq[it], uv, 0.6 * aff[u][cat], ubias[u], rec)
                logit = (-2.2 if scenario == "home" else -1.6) - 0.25 * k + sum(terms)
                p = sigmoid(logit)
                y = int(rng.random() < p)
                rows.append((t0 + t, key, scenario, "", f"it{it:x}", f"cat{cat}", device, hour, k, y, p, logit) + terms)
                if y:
                    clicked.append(cat)
            for cat in clicked:
                last_click[cat] = t
    rows.sort(key=lambda row: row[0])
    return rows


SCHEMA = {
    "name": "impressions",
    "userColumn": "user",
    "timeColumn": "ts",
    "sourceColumn": "surface",
    "windowSeconds": 86400,
    "windowOrigin": 1700000000,
    "tasks": ["click"],
    "features": [
        {"name": "user", "kind": "hashed", "buckets": 200003},
        {"name": "item", "kind": "hashed", "buckets": 100003},
        {"name": "campaign", "kind": "hashed", "buckets": 1009},
        {"name": "category", "kind": "hashed", "buckets": 1009},
        {"name": "device", "kind": "categorical", "vocabulary": ["ios", "android", "web"]},
        {"name": "hour", "kind": "id", "cardinality": 24},
        {"name": "position", "kind": "numeric", "transform": "none"},
    ],
    "scenarios": [
        {"name": "home", "userFeatures": ["user", "device"], "contextFeatures": ["hour", "position"],
         "itemFeatures": ["item", "category"], "labels": {"click": "clicked"}},
        {"name": "related", "userFeatures": ["user", "device"], "contextFeatures": ["hour", "position"],
         "itemFeatures": ["item", "category"], "labels": {"click": "clicked"}},
        {"name": "push", "userFeatures": ["user", "device"], "contextFeatures": ["hour"],
         "itemFeatures": ["campaign", "category"], "labels": {"click": "clicked"}},
    ],
    "sequences": [],
    "split": {"validStart": 1700000000 + 12 * 86400, "testStart": 1700000000 + 13 * 86400},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--users", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = generate(a.users, a.seed)
    with open(os.path.join(a.out, "impressions.csv"), "w", encoding="utf-8") as f:
        f.write("ts,user,surface,campaign,item,category,device,hour,position,clicked,true_p\n")
        for row in rows:
            f.write(",".join(str(x) for x in row[:10]) + f",{row[10]:.6f}\n")
    with open(os.path.join(a.out, "impressions.schema.json"), "w", encoding="utf-8") as f:
        json.dump(SCHEMA, f, indent=1)
    test = [row for row in rows if row[0] >= SCHEMA["split"]["testStart"]]
    print(f"{len(rows)} exposures, {len(test)} in the test window; wrote {a.out}/impressions.csv and .schema.json")
    names = ["item quality", "latent user x item factor", "user x category affinity", "user bias", "recency"]
    for scenario in ("home", "related", "push", None):
        part = [row for row in test if scenario is None or row[2] == scenario]
        labels = [row[9] for row in part]
        line = f"  {scenario or '(all)':8} {len(part):6} test exposures: Bayes AUC {auc([row[11] for row in part], labels):.4f}"
        for k in (1, 2, 3):
            line += f"; without the {names[k]} {auc([row[11] - row[12 + k] for row in part], labels):.4f}"
        print(line)


if __name__ == "__main__":
    main()
