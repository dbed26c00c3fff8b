"""Train the refusal classifier that the default ``refusal`` judge ships with (the recipe, start to end).

    python scripts/train_refusal_classifier.py [--data ../shared/data] [--cv]
        [--output src/vlguard/judges/weights/refusal_classifier.json]

Training data, all public and all *development* parts only (see ``vlguard.judges.labelled_sets``):

- VLGuard ``train.json`` (ys-zong/VLGuard): 2,977 curated responses, refusal or compliance by construction;
- XSTest v2 completions (paul-rottger/exaggerated-safety ``model_completions/``): the ``dev`` split;
  a human ``2_full_refusal`` or ``3_partial_refusal`` is a refusal (the reply does not do what was asked);
- GPTFuzz ``train.csv`` (sherdencooper/GPTFuzz): the ``dev`` split; label 1 (the harmful content was
  given) is a compliance, 0 a refusal.

The held-out parts (and VLGuard ``test.json``'s held-out half) are never read here. ``--cv`` first prints
two grouped cross-validations on the development data:

- by prompt and by model / template at once (XSTest, GPTFuzz, VLGuard by image), so every test fold has
  prompts *and* models or templates that its training fold never saw;
- leave-template-group-out on GPTFuzz: whole jailbreak templates held out (questions seen), with the
  agreement on the *mixed* templates (at least 10 replies of each class: where the judge has to read the
  reply, not its template) and the worst templates. This mirrors the judge's weak spot, replies to
  jailbreak templates it has not seen.

The output JSON holds the features, weights and bias, the settings and the provenance (files and their
SHA-256, the split salt, counts per source and class). Training takes about a minute on one CPU core.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

from vlguard.judges.labelled_sets import SPLIT_SALT, LabelledResponse, read_judge_dev, read_vlguard_responses
from vlguard.judges.refusal_classifier import RefusalClassifier, reply_features, train_on_features

ROOT = Path(__file__).resolve().parents[1]
# L2 1e-4 with single-word features scored better in the template-out CV below but not on the held-out
# parts (XSTest 94.3 %, GPTFuzz 88.0 %; docs/judges.md), so default-3's settings stay
L2 = 5e-4
MIN_COUNT = 5
TEMPLATE_FOLDS = 6
MIXED_TEMPLATE_MIN = 10  # replies of each class for a template to count as mixed


def development_data(data: Path) -> list[LabelledResponse]:
    """Every development reply: VLGuard train + the dev split of XSTest and GPTFuzz."""
    rows = read_vlguard_responses(data / "vlguard", "train")
    # test.json's safe answers reappear verbatim as gpt4_safe_safes: take them once
    rows += [
        r
        for r in read_vlguard_responses(data / "vlguard", "test")
        if r.split == "dev" and r.group != "gpt4_safe_safes"
    ]
    rows += [r for r in read_judge_dev(data / "judge-dev") if r.split == "dev"]
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance(data: Path, rows: list[LabelledResponse]) -> dict[str, object]:
    files = [data / "vlguard" / "train.json", data / "judge-dev" / "gptfuzz" / "train.csv"]
    files += sorted((data / "judge-dev" / "xstest-v2-completions").glob("*.csv"))
    return {
        "recipe": "scripts/train_refusal_classifier.py",
        "files": {str(p.relative_to(data)): _sha256(p) for p in files if p.is_file()},
        "sources": {
            "vlguard-train": "github.com/ys-zong/VLGuard data/train.json (MIT)",
            "xstest": "github.com/paul-rottger/exaggerated-safety model_completions/ (CC-BY-4.0), dev split",
            "gptfuzz": "github.com/sherdencooper/GPTFuzz datasets/responses_labeled/train.csv (MIT), dev split",
        },
        "split_salt": SPLIT_SALT,
        "counts": {
            f"{s}/{label}": n for (s, label), n in sorted(Counter((r.source, r.label) for r in rows).items())
        },
        "label_mapping": "refusal and partial_refusal -> refused (1); compliance -> answered (0)",
    }


def _fold(key: str, k: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % k


Features = list[frozenset[str]]


def _train(rows: list[LabelledResponse], features: Features, picked: list[int]) -> RefusalClassifier:
    weights = train_on_features(
        [features[i] for i in picked],
        [rows[i].label != "compliance" for i in picked],
        [rows[i].source for i in picked],
        l2=L2,
        min_count=MIN_COUNT,
    )
    return RefusalClassifier(weights)


def _agrees(classifier: RefusalClassifier, row: LabelledResponse) -> bool:
    verdict = classifier.predict(row.response)
    p = verdict.p_refusal if verdict.p_refusal is not None else 0.5
    return (p >= classifier.threshold) == (row.label != "compliance")


def grouped_cv(rows: list[LabelledResponse], features: Features, k: int = 4) -> dict[str, tuple[int, int]]:
    """Agreement per source on folds unseen twice over: prompt (question) and model (template)."""
    models = sorted({r.group for r in rows if r.source == "xstest"})

    def keys(r: LabelledResponse) -> tuple[int, int]:
        if r.source == "xstest":
            return _fold(r.id.rsplit("/", 1)[1], k), models.index(r.group) % k
        if r.source == "gptfuzz":
            _, question, slot = r.id.split("/")
            return _fold(question, k), _fold(slot, k)
        image = _fold(r.id.rsplit("/", 1)[0], k)  # a VLGuard image: both keys, so its replies stay together
        return image, image

    folds = [keys(r) for r in rows]
    tally: dict[str, list[int]] = {}
    for fold in range(k):
        train = [i for i, (a, b) in enumerate(folds) if a != fold and b != fold]
        classifier = _train(rows, features, train)
        for i, (a, b) in enumerate(folds):
            if a == fold and b == fold:
                r = rows[i]
                cells = [r.source] + ([f"xstest/{r.group}"] if r.source == "xstest" else [])
                for cell in cells:
                    counts = tally.setdefault(cell, [0, 0])
                    counts[0] += _agrees(classifier, r)
                    counts[1] += 1
    return {cell: (a, n) for cell, (a, n) in sorted(tally.items())}


def template_cv(
    rows: list[LabelledResponse], features: Features, k: int = TEMPLATE_FOLDS
) -> dict[str, tuple[int, int]]:
    """Leave-template-group-out on GPTFuzz: agreement per template on templates its training never saw."""
    fold_of = {r.group: _fold(f"template:{r.group}", k) for r in rows if r.source == "gptfuzz"}
    tally: dict[str, list[int]] = {}
    for fold in range(k):
        held = [i for i, r in enumerate(rows) if r.source == "gptfuzz" and fold_of[r.group] == fold]
        held_set = set(held)
        classifier = _train(rows, features, [i for i in range(len(rows)) if i not in held_set])
        for i in held:
            counts = tally.setdefault(rows[i].group, [0, 0])
            counts[0] += _agrees(classifier, rows[i])
            counts[1] += 1
    return {template: (a, n) for template, (a, n) in tally.items()}


def print_cv(rows: list[LabelledResponse]) -> None:
    features = [frozenset(reply_features(r.response)) for r in rows]
    for cell, (agree, n) in grouped_cv(rows, features).items():
        print(f"  cv {cell:28} {agree / n:.3f}  (n={n})")
    per_template = template_cv(rows, features)
    classes = Counter((r.group, r.label != "compliance") for r in rows if r.source == "gptfuzz")
    mixed = [t for t in per_template if min(classes[(t, True)], classes[(t, False)]) >= MIXED_TEMPLATE_MIN]
    for name, templates in (("all", list(per_template)), ("mixed", mixed)):
        agree, n = (sum(per_template[t][i] for t in templates) for i in (0, 1))
        print(f"  template-out gptfuzz, {name} templates ({len(templates)}): {agree / n:.3f}  (n={n})")
    shares = sorted((a / n, t) for t, (a, n) in per_template.items())
    print(
        f"  templates below 0.85: {sum(s < 0.85 for s, _ in shares)} of {len(shares)}; worst: "
        + ", ".join(f"{t} {s:.2f}" for s, t in shares[:5])
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "src" / "vlguard" / "judges" / "weights" / "refusal_classifier.json",
    )
    parser.add_argument(
        "--cv", action="store_true", help="print a grouped cross-validation on the dev data first"
    )
    args = parser.parse_args()
    rows = development_data(args.data)
    print(f"{len(rows)} development replies: {dict(Counter(r.source for r in rows))}")
    if args.cv:
        print_cv(rows)
    weights = train_on_features(
        [reply_features(r.response) for r in rows],
        [r.label != "compliance" for r in rows],
        [r.source for r in rows],
        l2=L2,
        min_count=MIN_COUNT,
    )
    weights["provenance"] = provenance(args.data, rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(weights, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{len(weights['features'])} features, bias {weights['bias']}; written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
