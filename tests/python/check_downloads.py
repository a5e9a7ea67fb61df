"""Independent check of a study's report downloads with pandas and pyarrow.

Usage: python3 check_downloads.py DIR

DIR holds what a researcher downloads for one study: attempts.csv, attempts.jsonl,
attempts.parquet, report.json and report-excluded.json (the summary with ?exclude=chance).
The script loads every table with pandas, checks the three agree and that the Parquet columns
have proper types, recomputes every figure of the summary that the table determines (per
group, per rater, agreement, speed-accuracy, the exclusion toggle, the flags) from textbook
definitions, and compares. Exit status 0 and a line "ok: ..." when everything matches; any
mismatch raises with a message naming the figure.
"""

import json
import math
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

COLUMNS = [
    "rater_id", "rater_name", "solution_id", "problem_id", "checkpoint", "round", "role",
    "is_correct", "verdict", "served_at", "deadline", "submitted_at", "server_elapsed_ms",
    "client_elapsed_ms", "first_wrong_step", "timing", "times_shown", "attempt_flags",
    "participant_id", "rater_returned", "rater_background", "confidence", "probability",
    "stated_probability", "justification", "hidden_count", "hidden_ms", "blur_count", "copy_count",
    "paste_count", "integrity_flags", "time_limit_ms", "position",
]
EVENT_COLUMNS = ["hidden_count", "hidden_ms", "blur_count", "copy_count", "paste_count"]
CLIENT_TOLERANCE_MS = 2000
Z = NormalDist().inv_cdf(0.975)
checked = 0


def close(what, got, want, tolerance=1e-9):
    """Compare one reported figure (None = null) with the recomputed one."""
    global checked
    checked += 1
    if want is None or (isinstance(want, float) and math.isnan(want)):
        assert got is None, f"{what}: reported {got}, expected null"
        return
    assert got is not None, f"{what}: reported null, expected {want}"
    if isinstance(want, bool) or isinstance(want, str):
        assert got == want, f"{what}: reported {got!r}, expected {want!r}"
        return
    assert math.isclose(got, want, rel_tol=tolerance, abs_tol=tolerance), f"{what}: reported {got}, expected {want}"


def wilson(k, n):
    p = k / n
    centre = p + Z * Z / (2 * n)
    spread = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (centre - spread) / (1 + Z * Z / n), (centre + spread) / (1 + Z * Z / n)


def rate(what, got, k, n):
    if n == 0:
        close(what, got, None)
        return
    assert got is not None, f"{what}: reported null, expected {k}/{n}"
    close(what + ".successes", got["successes"], k)
    close(what + ".trials", got["trials"], n)
    close(what + ".value", got["value"], k / n)
    low, high = wilson(k, n)
    close(what + ".low", got["low"], low)
    close(what + ".high", got["high"], high)


def upper_tail(k, n):
    """P(X >= k) for X ~ Binomial(n, 1/2), exactly."""
    if k == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n


def fleiss(table):
    """Fleiss' kappa with varying raters per item (rows: [n_correct, n_wrong])."""
    rows = [r for r in table if sum(r) >= 2]
    if not rows:
        return None
    p_i = [(sum(x * x for x in r) - sum(r)) / (sum(r) * (sum(r) - 1)) for r in rows]
    totals = [sum(r[c] for r in rows) for c in range(2)]
    p_e = sum((t / sum(totals)) ** 2 for t in totals)
    if abs(1 - p_e) < 1e-12:
        return None
    return (sum(p_i) / len(rows) - p_e) / (1 - p_e)


def krippendorff(units):
    """Nominal alpha from the pairable values of each unit (lists of labels), by pair counting."""
    units = [u for u in units if len(u) >= 2]
    values = [v for u in units for v in u]
    n = len(values)
    if n < 2:
        return None
    observed = sum(
        sum(1 for i, a in enumerate(u) for j, b in enumerate(u) if i != j and a != b) / (len(u) - 1)
        for u in units
    ) / n
    counts = pd.Series(values).value_counts()
    expected = sum(counts[a] * counts[b] for a in counts.index for b in counts.index if a != b) / (n * (n - 1))
    if expected == 0:
        return None
    return 1 - observed / expected


def normalise(value):
    """One cell as a plain Python value: null, bool, int (timestamps as Unix ms), float or str."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.value // 1_000_000
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def load(folder):
    optional = ["submitted_at", "client_elapsed_ms", "first_wrong_step", "participant_id", "rater_returned",
                "rater_background", "confidence", "probability", "stated_probability", "justification",
                "position"] + EVENT_COLUMNS
    csv = pd.read_csv(folder / "attempts.csv",
                      dtype={"rater_name": str, "attempt_flags": str, "integrity_flags": str, "justification": str},
                      keep_default_na=False, na_values={c: [""] for c in optional})
    jsonl = pd.read_json(folder / "attempts.jsonl", lines=True, dtype=False, precise_float=True)
    table = pq.read_table(folder / "attempts.parquet")
    parquet = table.to_pandas()
    assert list(csv.columns) == COLUMNS, f"CSV columns {list(csv.columns)}"
    assert list(parquet.columns) == COLUMNS, f"Parquet columns {list(parquet.columns)}"
    assert sorted(jsonl.columns) == sorted(COLUMNS), f"JSONL columns {list(jsonl.columns)}"
    assert len(csv) == len(jsonl) == len(parquet), (len(csv), len(jsonl), len(parquet))

    # Parquet types are proper: timestamps, integers, booleans, strings.
    types = {f.name: str(f.type) for f in table.schema}
    for column in ["served_at", "deadline", "submitted_at"]:
        assert types[column] in ("timestamp[ms, tz=UTC]", "timestamp[ms, tz=+00:00]"), (column, types[column])
    for column in ["round", "server_elapsed_ms", "client_elapsed_ms", "first_wrong_step", "times_shown",
                   "confidence", "probability", "time_limit_ms", "position"] + EVENT_COLUMNS:
        assert types[column] == "int64", (column, types[column])
    assert types["stated_probability"] == "double", types["stated_probability"]
    assert types["is_correct"] == "bool", types["is_correct"]
    for column in ["rater_id", "rater_name", "solution_id", "problem_id", "checkpoint", "role", "verdict", "timing", "attempt_flags",
                   "participant_id", "rater_returned", "rater_background", "justification", "integrity_flags"]:
        assert types[column] in ("string", "large_string"), (column, types[column])
    assert str(parquet["served_at"].dtype).startswith("datetime64[ms"), parquet["served_at"].dtype
    assert parquet["is_correct"].dtype == bool
    assert parquet["round"].dtype == "int64"

    # The three formats hold the same rows, value for value.
    want = [[normalise(v) for v in parquet[c]] for c in COLUMNS]
    for name, other in (("CSV", csv), ("JSON Lines", jsonl)):
        for column, expected in zip(COLUMNS, want):
            got = [normalise(v) for v in other[column]]
            assert got == expected, f"{column} differs between {name} and Parquet"
    frame = csv.copy()
    frame["answered"] = frame["verdict"] != "timeout"
    frame["right"] = ((frame["verdict"] == "correct") & frame["is_correct"]) | ((frame["verdict"] == "wrong") & ~frame["is_correct"])
    frame["flagged"] = frame["integrity_flags"] != ""
    return frame


def check_groups(frame, groups, label):
    by_key = {(g["checkpoint"], g["round"], g["role"]): g for g in groups}
    keys = sorted(frame.groupby(["checkpoint", "round", "role"]).groups.keys())
    assert sorted(by_key) == keys, f"{label}: groups {sorted(by_key)} vs {keys}"
    for key in keys:
        g = by_key[key]
        rows = frame[(frame.checkpoint == key[0]) & (frame["round"] == key[1]) & (frame.role == key[2])]
        answered = rows[rows.answered]
        what = f"{label} group {key}"
        close(what + " judgements", g["judgements"], len(rows))
        rate(what + " accuracy", g["accuracy"], int(answered.right.sum()), len(answered))
        on_c = answered[answered.is_correct]
        on_i = answered[~answered.is_correct]
        rate(what + " on correct", g["accuracy_on_correct"], int(on_c.right.sum()), len(on_c))
        rate(what + " on incorrect", g["accuracy_on_incorrect"], int(on_i.right.sum()), len(on_i))
        if len(on_c) and len(on_i):
            hit = (int((on_c.verdict == "correct").sum()) + 0.5) / (len(on_c) + 1)
            false_alarm = (int((on_i.verdict == "correct").sum()) + 0.5) / (len(on_i) + 1)
            # The app's normal quantile is Acklam's approximation (relative error < 1.2e-9).
            d_prime = NormalDist().inv_cdf(hit) - NormalDist().inv_cdf(false_alarm)
            close(what + " d'", g["d_prime"], d_prime, tolerance=1e-8)
        else:
            close(what + " d'", g["d_prime"], None)
        close(what + " timeout rate", g["timeout_rate"], (~rows.answered).sum() / len(rows))
        times = answered.server_elapsed_ms.astype(float)
        close(what + " mean", g["mean_ms"], times.mean() if len(times) else None)
        close(what + " median", g["median_ms"], times.median() if len(times) else None)
        right_times = answered[answered.right].server_elapsed_ms.astype(float)
        close(what + " mean when right", g["mean_ms_when_right"], right_times.mean() if len(right_times) else None)


def expected_stated(row):
    """The probability the answer gave the solution being correct (README: the probability, or
    the confidence on the verdict's side; nothing for plain verdicts and timeouts)."""
    if row.verdict == "timeout":
        return None
    if not pd.isna(row.probability):
        return row.probability / 100
    if not pd.isna(row.confidence):
        return row.confidence / 100 if row.verdict == "correct" else (100 - row.confidence) / 100
    return None


def expected_integrity(row):
    if pd.isna(row.hidden_count):
        return ""
    flags = []
    if row.hidden_count > 0:
        flags.append("left_tab")
    elif row.blur_count > 0:
        flags.append("lost_focus")
    if row.copy_count > 0:
        flags.append("copied")
    if row.paste_count > 0:
        flags.append("pasted")
    return ";".join(flags)


def check_scores(frame, groups, label):
    """Brier and log scores per group (probabilities clipped to [0.01, 0.99] for the log)."""
    by_key = {(g["checkpoint"], g["round"], g["role"]): g for g in groups}
    for key, rows in frame.groupby(["checkpoint", "round", "role"]):
        g = by_key[key]
        stated = rows[rows.stated_probability.notna()]
        p, y = stated.stated_probability.astype(float), stated.is_correct.astype(float)
        what = f"{label} group {key}"
        close(what + " stated", g["stated"], len(stated))
        close(what + " even odds", g["even_odds"], int((p == 0.5).sum()))
        close(what + " Brier", g["brier_score"], ((p - y) ** 2).mean() if len(stated) else None)
        clipped = p.clip(0.01, 0.99)
        logs = np.where(y == 1, np.log(clipped), np.log(1 - clipped))
        close(what + " log score", g["log_score"], logs.mean() if len(stated) else None)


def check_calibration(frame, bins, label):
    stated = frame[frame.stated_probability.notna()].copy()
    stated["bin"] = ((stated.stated_probability * 100).round().astype(int) // 10).clip(0, 9)
    expected = stated.groupby("bin")
    assert [b["from_percent"] // 10 for b in bins] == sorted(expected.groups), f"{label} calibration bins"
    for b in bins:
        members = expected.get_group(b["from_percent"] // 10)
        what = f"{label} calibration {b['from_percent']}"
        close(what + " answers", b["answers"], len(members))
        close(what + " mean", b["mean_stated"], members.stated_probability.mean())
        rate(what + " observed", b["observed"], int(members.is_correct.sum()), len(members))


def auroc(scores, labels):
    """Mann-Whitney AUROC with average ranks for ties."""
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = scores.rank(method="average")
    return (ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives)


def check_human_auroc(frame, human, label):
    answered = frame[frame.answered].copy()
    belief = answered.stated_probability.where(
        answered.stated_probability.notna(), (answered.verdict == "correct").astype(float))
    # Whole percents summed as integers (README), so equal answer sets tie exactly.
    answered["percent"] = (belief * 100).round().astype(int)
    per_solution = answered.groupby("solution_id").agg(
        total=("percent", "sum"), n=("percent", "size"), truth=("is_correct", "first"))
    per_solution["score"] = per_solution.total / per_solution.n / 100
    close(label + " human AUROC solutions", human["solutions"], len(per_solution))
    close(label + " human AUROC", human["auroc"], auroc(per_solution.score, per_solution.truth.astype(bool)))


def check_arms(frame, arms, label):
    """Speed-accuracy per checkpoint x time limit: accuracy (Wilson), timeouts, and the mean
    time of right answers with a normal 95 % interval (mean +- 1.96 standard errors)."""
    keys = sorted(frame.groupby(["checkpoint", "time_limit_ms"]).groups.keys())
    assert [(a["checkpoint"], a["time_limit_ms"]) for a in arms] == keys, f"{label}: arms {arms}"
    for a in arms:
        rows = frame[(frame.checkpoint == a["checkpoint"]) & (frame.time_limit_ms == a["time_limit_ms"])]
        answered = rows[rows.answered]
        what = f"{label} arm {a['checkpoint']} {a['time_limit_ms']}"
        close(what + " judgements", a["judgements"], len(rows))
        rate(what + " accuracy", a["accuracy"], int(answered.right.sum()), len(answered))
        close(what + " timeout rate", a["timeout_rate"], (~rows.answered).sum() / len(rows))
        right = answered[answered.right].server_elapsed_ms.astype(float)
        close(what + " when right", a["mean_ms_when_right"], right.mean() if len(right) else None)
        if len(right) >= 2:
            spread = Z * right.std(ddof=1) / math.sqrt(len(right))
            close(what + " low", a["mean_ms_when_right_low"], right.mean() - spread, tolerance=1e-7)
            close(what + " high", a["mean_ms_when_right_high"], right.mean() + spread, tolerance=1e-7)
        else:
            close(what + " low", a["mean_ms_when_right_low"], None)


def check_positions(frame, buckets, label):
    placed = frame[frame.position.notna()]
    bucket = (placed.position.astype(int) - 1) // 5
    assert len(buckets) == (int(bucket.max()) + 1 if len(placed) else 0), f"{label}: {len(buckets)} position buckets"
    for b in buckets:
        k = (b["from"] - 1) // 5
        members = placed[bucket == k]
        answered = members[members.answered]
        what = f"{label} positions {b['from']}-{b['to']}"
        close(what + " to", b["to"], (k + 1) * 5)
        close(what + " judgements", b["judgements"], len(members))
        rate(what, b["accuracy"], int(answered.right.sum()), len(answered))


def check_raters(frame, raters):
    assert sorted(r["rater_id"] for r in raters) == sorted(frame.rater_id.unique()), "raters"
    chance = set()
    for r in raters:
        rows = frame[frame.rater_id == r["rater_id"]]
        answered = rows[rows.answered]
        what = f"rater {r['rater_id']}"
        k, n = int(answered.right.sum()), len(answered)
        close(what + " judgements", r["judgements"], len(rows))
        rate(what + " accuracy", r["accuracy"], k, n)
        close(what + " median", r["median_ms"], answered.server_elapsed_ms.astype(float).median() if n else None)
        close(what + " timeouts", r["timeouts"], len(rows) - n)
        p = upper_tail(k, n)
        close(what + " p", r["p_value"], p)
        close(what + " chance_level", r["chance_level"], p > 0.05)
        if p > 0.05:
            chance.add(r["rater_id"])
    return chance


def check_agreement(frame, agreement, label):
    answered = frame[frame.answered]
    per_solution = answered.groupby("solution_id").verdict.apply(list)
    pairable = [v for v in per_solution if len(v) >= 2]
    close(label + " agreement solutions", agreement["solutions"], len(pairable))
    table = [[v.count("correct"), v.count("wrong")] for v in pairable]
    close(label + " Fleiss kappa", agreement["fleiss_kappa"], fleiss(table))
    close(label + " Krippendorff alpha", agreement["krippendorff_alpha"], krippendorff(pairable))


def check_time_buckets(frame, buckets, label):
    answered = frame[frame.answered]
    if len(answered) == 0:
        assert buckets == [], label
        return
    bucket = answered.server_elapsed_ms // 5000
    assert len(buckets) == int(bucket.max()) + 1, f"{label}: {len(buckets)} time buckets"
    for b in buckets:
        k = b["from_ms"] // 5000
        close(f"{label} bucket {k} to", b["to_ms"], (k + 1) * 5000)
        members = answered[bucket == k]
        rate(f"{label} bucket {k}", b["accuracy"], int(members.right.sum()), len(members))


def check_step_flags(frame, step_flags, label):
    """Step flags per role: "wrong" verdicts, flagged ones (Wilson rate), on incorrect solutions,
    and agreement with each solution's most flagged step over solutions with two or more flags."""
    assert sorted(f["role"] for f in step_flags) == ["helpful", "sneaky"], step_flags
    for f in step_flags:
        wrong = frame[(frame.role == f["role"]) & (frame.verdict == "wrong")]
        flagged = wrong[wrong.first_wrong_step.notna()]
        what = f"{label} step flags {f['role']}"
        close(what + " wrong", f["wrong_verdicts"], len(wrong))
        close(what + " flagged", f["flagged"], len(flagged))
        rate(what + " rate", f["flag_rate"], len(flagged), len(wrong))
        on_incorrect = wrong[~wrong.is_correct]
        close(what + " wrong on incorrect", f["wrong_on_incorrect"], len(on_incorrect))
        close(what + " flagged on incorrect", f["flagged_on_incorrect"], int(on_incorrect.first_wrong_step.notna().sum()))
        shared = [steps for _, steps in flagged.groupby("solution_id").first_wrong_step if len(steps) >= 2]
        total = sum(len(steps) for steps in shared)
        agreeing = sum(int(steps.value_counts().max()) for steps in shared)
        close(what + " shared", f["flags_on_shared_solutions"], total)
        close(what + " agreement", f["agreement_with_modal_step"], agreeing / total if total else None)


def expected_timing(row):
    """The timing outcome from the row's facts (README: an answer after the deadline is stored as
    a timeout; the page's own timeout and a timeout with nothing arriving are told apart)."""
    if pd.isna(row.submitted_at):
        assert row.verdict == "timeout", row
        return "no_answer"
    if row.verdict != "timeout":
        assert row.submitted_at <= row.deadline, row
        return "in_time"
    if row.submitted_at > row.deadline:
        # A timeout that arrived late was either the page's timeout or a late verdict: the
        # table's `timing` says which, and only those two are possible.
        assert row.timing in ("page_timeout", "late_answer"), row
        return row.timing
    return "page_timeout"


def expected_flags(row, chance):
    flags = []
    if row.rater_id in chance:
        flags.append("chance_level_rater")
    if not pd.isna(row.submitted_at):
        if pd.isna(row.client_elapsed_ms):
            flags.append("no_client_time")
        elif abs(row.client_elapsed_ms - (row.submitted_at - row.served_at)) > CLIENT_TOLERANCE_MS:
            flags.append("implausible_client_time")
    if row.times_shown > 1:
        flags.append("resumed")
    return ";".join(flags)


def main(folder):
    frame = load(folder)
    report = json.loads((folder / "report.json").read_text())
    excluded_report = json.loads((folder / "report-excluded.json").read_text())
    assert report["judgements"] == len(frame), (report["judgements"], len(frame))
    summary = report["report"]
    assert summary["excluded_raters"] == []
    check_groups(frame, summary["groups"], "all")
    chance = check_raters(frame, summary["raters"])
    check_agreement(frame, summary["agreement"], "all")
    check_time_buckets(frame, summary["accuracy_by_time"], "all")
    check_step_flags(frame, summary["step_flags"], "all")
    assert frame.first_wrong_step.notna().sum() > 0, "no step flags to check"

    # The exclusion toggle: the same figures without the chance-level raters.
    toggled = excluded_report["report"]
    assert sorted(toggled["excluded_raters"]) == sorted(chance), (toggled["excluded_raters"], chance)
    kept = frame[~frame.rater_id.isin(chance)]
    check_groups(kept, toggled["groups"], "excluded")
    check_agreement(kept, toggled["agreement"], "excluded")
    check_time_buckets(kept, toggled["accuracy_by_time"], "excluded")
    check_step_flags(kept, toggled["step_flags"], "excluded")

    # Answer formats and trial integrity, row by row and in the figures.
    stated = [expected_stated(row) for row in frame.itertuples()]
    got = [None if pd.isna(v) else float(v) for v in frame.stated_probability]
    assert got == stated, "stated probabilities differ from their rule"
    integrity = [expected_integrity(row) for row in frame.itertuples()]
    assert list(frame.integrity_flags) == integrity, "integrity flags differ from their rule"
    assert (frame.time_limit_ms == frame.deadline - frame.served_at).all(), "time limits are deadline - serving time"
    for rater, rows in frame.sort_values(["served_at"]).groupby("rater_id"):
        assert list(rows.position) == list(range(1, len(rows) + 1)), f"rater {rater}: positions {list(rows.position)}"
    check_arms(frame, summary["arms"], "all")
    check_positions(frame, summary["accuracy_by_position"], "all")
    check_scores(frame, summary["groups"], "all")
    check_calibration(frame, summary["calibration"], "all")
    check_human_auroc(frame, summary["human_auroc"], "all")
    close("flagged attempts", summary["integrity"]["flagged_attempts"], int(frame.flagged.sum()))
    close("excluded attempts", summary["integrity"]["excluded_attempts"], 0)
    flagged_path = folder / "report-flagged.json"
    if flagged_path.exists():
        without = json.loads(flagged_path.read_text())["report"]
        clean = frame[~frame.flagged]
        close("flagged exclusion: excluded", without["integrity"]["excluded_attempts"], int(frame.flagged.sum()))
        check_groups(clean, without["groups"], "unflagged")
        check_scores(clean, without["groups"], "unflagged")
        check_calibration(clean, without["calibration"], "unflagged")
        check_human_auroc(clean, without["human_auroc"], "unflagged")

    timings = [expected_timing(row) for row in frame.itertuples()]
    assert list(frame["timing"]) == timings, "timing outcomes differ from their rules"
    flags = [expected_flags(row, chance) for row in frame.itertuples()]
    assert list(frame["attempt_flags"]) == flags, "flags differ from their rules"
    counts = pd.Series([f for fs in flags for f in fs.split(";") if f]).value_counts().to_dict()
    timing_counts = pd.Series(timings).value_counts().to_dict()
    print(f"ok: {len(frame)} attempts in 3 formats, {checked} figures match, {len(chance)} chance-level raters, "
          f"timing {timing_counts}, flags {counts}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
