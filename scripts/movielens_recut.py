#!/usr/bin/env python3
"""Re-cuts MovieLens into an event log with scenarios along another axis than genre, written as a new user would write
their own log: a CSV with raw ids (hashed features), an empty year where the title has none (`missing: allow`), the
source derived from two columns (`sourceMapping`), and a schema JSON. Used by scripts/compare.py (datasets ml-decade,
ml-hour) to measure the recipe on logs whose scenario axis the defaults were not tuned on.

Usage: python3 scripts/movielens_recut.py --axis decade|hour --movielens DIR --out DIR
Writes OUT/ml-<axis>.csv and OUT/ml-<axis>.schema.json (skipped when both exist and are newer than the ratings).

Axes (6 scenarios each):
  decade: the movie's release year: classic (< 1970 or unknown), s70, s80, s90a (1990-95), s90b (1996-2002), recent
  hour:   the UTC hour of the rating in 4-hour slots: night, early, morning, noon, afternoon, evening
Every rating is an exposure of its scenario (liked = rating >= 4, loved = rating >= 4.5) and also a `rate` behaviour
(movie, genre, stars) at the same second; tags are `tag` behaviours (movie, tag). Valid and test start at the day of
the 80 % and 90 % quantiles of the rating times, as the built-in MovieLens importer does.
"""
import argparse, csv, datetime, json, os

AXES = {
    "decade": ["classic", "s70", "s80", "s90a", "s90b", "recent"],
    "hour": ["night", "early", "morning", "noon", "afternoon", "evening"],
}


def year_of(title):
    t = title.strip()
    if len(t) >= 6 and t.endswith(")") and t[-6] == "(" and t[-5:-1].isdigit():
        return int(t[-5:-1])
    return None


def scenario(axis, year, ts):
    if axis == "decade":
        for bound, name in ((1970, "classic"), (1980, "s70"), (1990, "s80"), (1996, "s90a"), (2003, "s90b")):
            if year is None or year < bound:
                return name
        return "recent"
    return AXES["hour"][datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).hour // 4]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--axis", choices=sorted(AXES), required=True)
    ap.add_argument("--movielens", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(a.out, f"ml-{a.axis}.csv")
    schema_path = os.path.join(a.out, f"ml-{a.axis}.schema.json")
    ratings_path = os.path.join(a.movielens, "ratings.csv")
    if all(os.path.exists(p) and os.path.getmtime(p) >= os.path.getmtime(ratings_path) for p in (log, schema_path)):
        print(f"{log} exists")
        return
    movies = {}
    with open(os.path.join(a.movielens, "movies.csv"), encoding="utf-8") as f:
        for r in csv.DictReader(f):
            movies[r["movieId"]] = (r["genres"].split("|"), year_of(r["title"]))
    unknown = (["(no genres listed)"], None)
    events = []  # (time, order within the second: exposure, rating, tag; row)
    with open(ratings_path, encoding="utf-8") as f:
        ratings = list(csv.DictReader(f))
    for r in ratings:
        genres, year = movies.get(r["movieId"], unknown)
        ts, stars = int(r["timestamp"]), float(r["rating"])
        page = scenario(a.axis, year, ts)
        events.append((ts, 0, [r["userId"], ts, "impression", page, r["movieId"], genres[0], "|".join(genres),
                               "" if year is None else year, "", "", int(stars >= 4), int(stars >= 4.5)]))
        events.append((ts, 1, [r["userId"], ts, "rate", "", r["movieId"], genres[0], "", "", r["rating"], "", "", ""]))
    tags_path = os.path.join(a.movielens, "tags.csv")
    if os.path.exists(tags_path):
        with open(tags_path, encoding="utf-8") as f:
            for r in csv.DictReader(f):
                genres, _ = movies.get(r["movieId"], unknown)
                events.append((int(r["timestamp"]), 2, [r["userId"], int(r["timestamp"]), "tag", "", r["movieId"], genres[0], "", "", "", r["tag"], "", ""]))
    events.sort(key=lambda e: (e[0], e[1]))
    with open(log, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user", "ts", "event", "page", "movie", "genre", "genres", "year", "stars", "tag", "liked", "loved"])
        for _, _, row in events:
            w.writerow(row)
    times = sorted(int(r["timestamp"]) for r in ratings)
    day = lambda q: times[int(q * (len(times) - 1))] // 86400 * 86400
    names = AXES[a.axis]
    schema = {
        "name": f"ml-{a.axis}", "userColumn": "user", "timeColumn": "ts", "timeFormat": "unix_seconds",
        "windowSeconds": 86400, "windowOrigin": 0, "tasks": ["click", "conversion"],
        "features": [
            {"name": "user", "kind": "hashed", "buckets": 100003},
            {"name": "movie", "kind": "hashed", "buckets": 200003},
            {"name": "genre", "kind": "hashed", "buckets": 101},
            {"name": "genres", "kind": "hashed", "buckets": 5003},
            {"name": "year", "kind": "numeric", "transform": "standardize", "missing": "allow"},
            {"name": "stars", "kind": "numeric", "transform": "standardize"},
            {"name": "tag", "kind": "hashed", "buckets": 20011},
        ],
        "scenarios": [{"name": n, "userFeatures": ["user"], "itemFeatures": ["movie", "genre", "genres", "year"],
                       "labels": {"click": "liked", "conversion": "loved"}} for n in names],
        "sequences": [{"name": "rate", "features": ["movie", "genre", "stars"], "historyCap": 100},
                      {"name": "tag", "features": ["movie", "tag"], "historyCap": 20}],
        "sourceMapping": {"columns": ["event", "page"],
                          "rules": [{"when": {"event": "impression", "page": n}, "source": n} for n in names]
                          + [{"when": {"event": "rate"}, "source": "rate"}, {"when": {"event": "tag"}, "source": "tag"}]},
        "split": {"validStart": day(0.8), "testStart": day(0.9)},
    }
    with open(schema_path, "w", encoding="utf-8") as f:
        json.dump(schema, f, indent=1)
    print(f"wrote {log} ({len(events):,} rows) and {schema_path}")


if __name__ == "__main__":
    main()
