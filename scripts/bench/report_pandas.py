"""The pandas reference for the report over a million judgements (issue 21, part 5).

Usage: python3 scripts/bench/report_pandas.py DIR [RUNS]

DIR holds what `bench-report --out-dir DIR` downloaded: attempts.csv (the tidy table) and
report.json (the summary). Times what a researcher's notebook does, RUNS times (default 3):
read the CSV with pandas, then compute the summary's per checkpoint x round x role and per rater
figures (judgements, accuracy of answered judgements, timeout rate, mean and median server
time of answered judgements, mean time of right ones, per-rater timeouts). Prints each run's
read and compute seconds and their best, then checks every one of those figures against
report.json (equal within 1e-9) and fails naming the first that differs.
"""

import json
import math
import sys
import time
from pathlib import Path

import pandas as pd


def figures(df):
    answered = df[df["verdict"] != "timeout"]
    right = (answered["verdict"] == "correct") == answered["is_correct"]
    answered = answered.assign(right=right)
    keys = ["checkpoint", "round", "role"]
    groups = pd.DataFrame({
        "judgements": df.groupby(keys).size(),
        "timeouts": df[df["verdict"] == "timeout"].groupby(keys).size(),
        "answered": answered.groupby(keys).size(),
        "right": answered.groupby(keys)["right"].sum(),
        "mean_ms": answered.groupby(keys)["server_elapsed_ms"].mean(),
        "median_ms": answered.groupby(keys)["server_elapsed_ms"].median(),
        "mean_ms_when_right": answered[answered["right"]].groupby(keys)["server_elapsed_ms"].mean(),
    }).fillna({"timeouts": 0})
    raters = pd.DataFrame({
        "judgements": df.groupby("rater_id").size(),
        "timeouts": df[df["verdict"] == "timeout"].groupby("rater_id").size(),
        "answered": answered.groupby("rater_id").size(),
        "right": answered.groupby("rater_id")["right"].sum(),
        "median_ms": answered.groupby("rater_id")["server_elapsed_ms"].median(),
    }).fillna({"timeouts": 0})
    return groups, raters


def close(a, b):
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return b is not None and abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))


def main():
    folder = Path(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    reads, computes = [], []
    for _ in range(runs):
        t = time.perf_counter()
        df = pd.read_csv(folder / "attempts.csv",
                         usecols=["rater_id", "checkpoint", "round", "role", "is_correct",
                                  "verdict", "server_elapsed_ms"])
        reads.append(time.perf_counter() - t)
        t = time.perf_counter()
        groups, raters = figures(df)
        computes.append(time.perf_counter() - t)
    totals = [r + c for r, c in zip(reads, computes)]
    print(f"pandas {pd.__version__}: {len(df)} attempts; read "
          + " ".join(f"{x:.3f}" for x in reads) + " s, compute "
          + " ".join(f"{x:.3f}" for x in computes) + f" s; best read + compute {min(totals):.3f} s")

    summary = json.loads((folder / "report.json").read_text())
    assert summary["judgements"] == len(df), (summary["judgements"], len(df))
    report = summary["report"]
    assert len(report["groups"]) == len(groups), (len(report["groups"]), len(groups))
    for g in report["groups"]:
        ours = groups.loc[(g["checkpoint"], g["round"], g["role"])]
        accuracy = g["accuracy"]
        pairs = {
            "judgements": (g["judgements"], ours["judgements"]),
            "accuracy": (accuracy and accuracy["value"], ours["right"] / ours["answered"]),
            "timeout_rate": (g["timeout_rate"], ours["timeouts"] / ours["judgements"]),
            "mean_ms": (g["mean_ms"], ours["mean_ms"]),
            "median_ms": (g["median_ms"], ours["median_ms"]),
            "mean_ms_when_right": (g["mean_ms_when_right"], ours["mean_ms_when_right"]),
        }
        for name, (theirs, mine) in pairs.items():
            assert close(mine, theirs), f"group {g['checkpoint']}/{g['round']}/{g['role']} {name}: report {theirs}, pandas {mine}"
    assert len(report["raters"]) == len(raters), (len(report["raters"]), len(raters))
    for r in report["raters"]:
        ours = raters.loc[r["rater_id"]]
        accuracy = r["accuracy"]
        pairs = {
            "judgements": (r["judgements"], ours["judgements"]),
            "timeouts": (r["timeouts"], ours["timeouts"]),
            "accuracy": (accuracy and accuracy["value"], ours["right"] / ours["answered"]),
            "median_ms": (r["median_ms"], ours["median_ms"]),
        }
        for name, (theirs, mine) in pairs.items():
            assert close(mine, theirs), f"rater {r['rater_id']} {name}: report {theirs}, pandas {mine}"
    print(f"ok: {len(report['groups'])} groups and {len(report['raters'])} raters equal report.json")


if __name__ == "__main__":
    main()
