"""Reference figures for the confidence and probability reports (issue 23), computed with
scikit-learn and pandas from a hand-made judgement set, for tests/scoring_reference.rs.

Run by hand when the set or a definition changes, with pinned versions:
    python3 -m pip install pandas==3.1.1 scikit-learn==1.9.1
    python3 scripts/reference/score_reference.py
It reads tests/fixtures/scoring/attempts.csv and writes tests/fixtures/scoring/expected.json
(both committed). Definitions, as README states them:
- stated probability that the solution is correct: probability / 100, or confidence / 100 on a
  "correct" verdict and 1 - confidence / 100 on a "wrong" one; none for timeouts;
- Brier score: sklearn.metrics.brier_score_loss of the stated probabilities against truth;
- log score: -sklearn.metrics.log_loss with probabilities clipped to [0.01, 0.99];
- calibration: answers binned by whole percent into [0,10), ..., [90,100]; mean stated,
  share correct;
- human AUROC: sklearn.metrics.roc_auc_score of each solution's mean answer (stated
  probability, or 1 / 0 for correct / wrong) against truth;
- speed-accuracy: accuracy of answered judgements in 5 s buckets of server time, and the mean
  time of right answers per group.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

HERE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "scoring"


def stated(row):
    if row.verdict == "timeout":
        return np.nan
    if not pd.isna(row.probability):
        return row.probability / 100
    if not pd.isna(row.confidence):
        return row.confidence / 100 if row.verdict == "correct" else 1 - row.confidence / 100
    return np.nan


def main():
    frame = pd.read_csv(HERE / "attempts.csv")
    frame["stated"] = [stated(r) for r in frame.itertuples()]
    frame["answered"] = frame.verdict != "timeout"
    frame["right"] = ((frame.verdict == "correct") & frame.is_correct) | ((frame.verdict == "wrong") & ~frame.is_correct)

    groups = []
    for (checkpoint, rnd, role), rows in frame.groupby(["checkpoint", "round", "role"]):
        answered = rows[rows.answered]
        with_p = rows[rows.stated.notna()]
        y = with_p.is_correct.astype(int).to_numpy()
        p = with_p.stated.to_numpy()
        right = answered[answered.right]
        groups.append({
            "checkpoint": checkpoint, "round": int(rnd), "role": role,
            "stated": len(with_p),
            "even_odds": int((p == 0.5).sum()),
            "brier_score": float(brier_score_loss(y, p)),
            "log_score": float(-log_loss(y, np.clip(p, 0.01, 0.99), labels=[0, 1])),
            "accuracy": float(answered.right.mean()),
            "mean_ms_when_right": float(right.server_elapsed_ms.mean()) if len(right) else None,
        })

    with_p = frame[frame.stated.notna()].copy()
    with_p["bin"] = ((with_p.stated * 100).round().astype(int) // 10).clip(0, 9)
    calibration = [
        {"from_percent": int(b) * 10, "answers": len(rows), "mean_stated": float(rows.stated.mean()),
         "observed": float(rows.is_correct.mean())}
        for b, rows in with_p.groupby("bin")
    ]

    answered = frame[frame.answered].copy()
    answered["belief"] = answered.stated.where(answered.stated.notna(), (answered.verdict == "correct").astype(float))
    per_solution = answered.groupby("solution").agg(score=("belief", "mean"), truth=("is_correct", "first"))
    human_auroc = float(roc_auc_score(per_solution.truth.astype(int), per_solution.score))

    bucket = answered.server_elapsed_ms // 5000
    by_time = [
        {"from_ms": int(k) * 5000, "right": int(rows.right.sum()), "answered": len(rows)}
        for k, rows in answered.groupby(bucket)
    ]

    expected = {
        "groups": groups,
        "calibration": calibration,
        "human_auroc": {"solutions": len(per_solution), "auroc": human_auroc},
        "accuracy_by_time": by_time,
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {HERE / 'expected.json'}: {len(groups)} groups, {len(calibration)} bins, AUROC {human_auroc:.4f}")


if __name__ == "__main__":
    main()
