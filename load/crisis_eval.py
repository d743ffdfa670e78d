"""Measure the crisis detectors on the labelled set: precision, recall, F1 and latency.

    .venv/bin/python load/crisis_eval.py                  # the table docs/safety.md shows
    .venv/bin/python load/crisis_eval.py --misses         # also list every wrong answer
    .venv/bin/python load/crisis_eval.py --threshold 0.06 # try another classifier threshold
    .venv/bin/python load/crisis_eval.py --calibrate      # choose the threshold from the examples alone
    .venv/bin/python load/crisis_eval.py --sweep          # the combined detector at other thresholds

``--calibrate`` never reads the labelled set: it scores every classifier
example against the others (leave-one-out) and prints, per threshold, the
precision, recall and F2 on the examples; the plugin's default threshold is
the one with the best leave-one-out F2, which counts a missed crisis as
costlier than a false alarm (a false alarm adds resources to an ordinary
reply; a miss leaves someone in crisis without them). ``--sweep`` shows what
other thresholds would give on the labelled set (for operators weighing
recall against false alarms; not for choosing the default).

Three detectors are scored on ``tests/data/crisis_labelled.jsonl``: the
lexicon alone, the classifier alone and the combination the guardrail uses
(lexicon, else classifier). They are built from the same files and settings
as the service's ``crisis`` plugin. Latency is the time of one ``detect`` call
per message, in this process, after one warm-up pass: the CPU one turn's
detection costs (the service runs the classifier on a thread of its own,
``crisis_runner``). The classifier needs the extra
``crisis-model``; without it only the lexicon is scored.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from spiralogic_plugins.crisis import CrisisDetector, Detection, Options, load_classifier
from spiralogic_plugins.crisis_lexicon import Lexicon

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "crisis_labelled.jsonl"
THRESHOLDS = [round(-0.05 + 0.01 * i, 2) for i in range(21)]


@dataclass(frozen=True)
class Example:
    text: str
    crisis: bool
    category: str
    phrasing: str | None


@dataclass
class Score:
    name: str
    predictions: list[bool]
    latencies_ms: list[float]

    def row(self, examples: list[Example]) -> dict[str, float]:
        truth = [e.crisis for e in examples]
        precision, recall, f1 = rates(self.predictions, truth)
        latencies = sorted(self.latencies_ms)
        return {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "tp": sum(p and t for p, t in zip(self.predictions, truth)),
            "fp": sum(p and not t for p, t in zip(self.predictions, truth)),
            "fn": sum(t and not p for p, t in zip(self.predictions, truth)),
            "p50_ms": statistics.median(latencies),
            "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
        }


def load_examples(path: Path = LABELLED) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Example(r["text"], r["crisis"], r["category"], r.get("phrasing")) for r in rows]


def measure(name: str, detect: Callable[[str], Detection | None], examples: list[Example]) -> Score:
    for example in examples:  # warm-up: caches, allocator, branch predictors
        detect(example.text)
    predictions, latencies = [], []
    for example in examples:
        start = time.perf_counter()
        found = detect(example.text)
        latencies.append((time.perf_counter() - start) * 1000)
        predictions.append(found is not None)
    return Score(name, predictions, latencies)


def detectors(options: Options) -> dict[str, CrisisDetector]:
    lexicon = Lexicon.from_file(options.path(options.lexicon))
    classifier = load_classifier(options.path(options.prototypes))
    found = {"lexicon": CrisisDetector(lexicon)}
    if classifier is not None:
        never = Lexicon({}, None)  # matches nothing: the classifier alone
        found["classifier"] = CrisisDetector(never, classifier, options.threshold)
        found["combined"] = CrisisDetector(lexicon, classifier, options.threshold)
    return found


def table(scores: list[Score], examples: list[Example]) -> str:
    lines = [
        "| detector | precision | recall | F1 | TP | FP | FN | latency p50 | latency p95 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for score in scores:
        r = score.row(examples)
        lines.append(
            f"| {score.name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['tp']} | {r['fp']} | {r['fn']} "
            f"| {r['p50_ms']:.2f} ms | {r['p95_ms']:.2f} ms |"
        )
    return "\n".join(lines)


def breakdown(scores: list[Score], examples: list[Example]) -> str:
    """Recall per crisis category and phrasing, false alarms per kind of safe message."""
    groups = sorted({(e.crisis, e.category, e.phrasing or "") for e in examples}, key=lambda g: (not g[0], g[1], g[2]))
    lines = ["| group | n | " + " | ".join(s.name for s in scores) + " |", "|---|---|" + "---|" * len(scores)]
    for crisis, category, phrasing in groups:
        members = [i for i, e in enumerate(examples) if (e.crisis, e.category, e.phrasing or "") == (crisis, category, phrasing)]
        label = f"{category} ({phrasing})" if phrasing else category
        what = "flagged" if crisis else "false alarms"
        cells = [f"{sum(s.predictions[i] for i in members)} {what}" for s in scores]
        lines.append(f"| {label} | {len(members)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def misses(scores: list[Score], examples: list[Example]) -> str:
    lines = []
    for score in scores:
        wrong = [e for e, p in zip(examples, score.predictions) if p != e.crisis]
        lines.append(f"\n{score.name}: {len(wrong)} wrong")
        lines += [f"  {'missed' if e.crisis else 'false alarm'} [{e.category}] {e.text}" for e in wrong]
    return "\n".join(lines)


def rates(flagged: list[bool], crisis: list[bool], beta: float = 1.0) -> tuple[float, float, float]:
    """Precision, recall and F-beta (F1 by default) of ``flagged`` against the truth ``crisis``."""
    tp = sum(f and c for f, c in zip(flagged, crisis))
    precision, recall = tp / max(sum(flagged), 1), tp / max(sum(crisis), 1)
    return precision, recall, (1 + beta**2) * precision * recall / (beta**2 * precision + recall) if tp else 0.0


def calibrate(options: Options) -> str:
    """Leave-one-out precision, recall and F2 on the classifier's examples per threshold."""
    classifier = load_classifier(options.path(options.prototypes))
    if classifier is None:
        return "classifier unavailable (install the crisis-model extra)"
    scores, crisis = classifier.leave_one_out()
    lines = ["| threshold | precision | recall | F2 |", "|---|---|---|---|"]
    best = (-1.0, None)
    for threshold in THRESHOLDS:
        precision, recall, f2 = rates(list(scores >= threshold), list(crisis), beta=2.0)
        lines.append(f"| {threshold:.2f} | {precision:.3f} | {recall:.3f} | {f2:.3f} |")
        best = max(best, (round(f2, 6), threshold))
    lines.append(f"\nbest leave-one-out F2 at threshold {best[1]:.2f}")
    return "\n".join(lines)


def sweep(options: Options, examples: list[Example]) -> str:
    """The combined detector on the labelled set at several thresholds, with its false-alarm rate."""
    lexicon = Lexicon.from_file(options.path(options.lexicon))
    classifier = load_classifier(options.path(options.prototypes))
    if classifier is None:
        return "classifier unavailable (install the crisis-model extra)"
    by_lexicon = [lexicon.match(e.text) is not None for e in examples]
    scores = [classifier.verdict(e.text).score for e in examples]
    truth = [e.crisis for e in examples]
    lines = ["| threshold | precision | recall | F1 | false alarms on safe messages |", "|---|---|---|---|---|"]
    for threshold in THRESHOLDS[5:12]:
        flagged = [hit or score >= threshold for hit, score in zip(by_lexicon, scores)]
        precision, recall, f1 = rates(flagged, truth)
        alarms = sum(f and not t for f, t in zip(flagged, truth))
        lines.append(f"| {threshold:.2f} | {precision:.3f} | {recall:.3f} | {f1:.3f} | {alarms}/{truth.count(False)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, help="classifier threshold (default: the plugin's)")
    parser.add_argument("--misses", action="store_true", help="list every wrong answer")
    parser.add_argument("--calibrate", action="store_true", help="choose the threshold on the classifier's examples (leave-one-out)")
    parser.add_argument("--sweep", action="store_true", help="score the combined detector at several thresholds")
    args = parser.parse_args(argv)
    options = Options() if args.threshold is None else Options(threshold=args.threshold)
    if args.calibrate:
        print(calibrate(options))
        return 0
    if args.sweep:
        print(sweep(options, load_examples()))
        return 0
    examples = load_examples()
    built = detectors(options)
    if "classifier" not in built:
        print("classifier unavailable (install the crisis-model extra); scoring the lexicon alone", file=sys.stderr)
    scores = [measure(name, detector.detect, examples) for name, detector in built.items()]
    positives = sum(e.crisis for e in examples)
    print(f"{len(examples)} messages ({positives} crisis, {len(examples) - positives} not); classifier threshold {options.threshold}\n")
    print(table(scores, examples))
    print()
    print(breakdown(scores, examples))
    if args.misses:
        print(misses(scores, examples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
