"""The ReDial report as Markdown (main table beside the published rows, buckets, linking)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Published rows, DATA.md: He et al. (CIKM'23), recommendation condition, zero-shot, 20 titles.
PUBLISHED = {
    "GPT-4": {"recall@1": 0.050, "recall@5": 0.140, "recall@10": 0.201, "recall@20": 0.268,
              "ndcg@10": 0.115},
    "GPT-3.5-turbo": {"recall@1": 0.043, "recall@5": 0.126, "recall@10": 0.183,
                      "recall@20": 0.224, "ndcg@10": 0.105},
    "BAIZE-V2-13B": {"recall@1": 0.034, "recall@5": 0.105, "recall@10": 0.144,
                     "recall@20": 0.168, "ndcg@10": 0.082},
    "Vicuna-13B": {"recall@1": 0.034, "recall@5": 0.089, "recall@10": 0.120,
                   "recall@20": 0.144, "ndcg@10": 0.072},
}  # fmt: skip


def _fmt(entry: Mapping[str, Any], key: str) -> str:
    v = entry.get(key)
    if v is None:
        return "–"
    ci = entry.get(f"{key}_ci")
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: the main table, published rows, buckets, comparisons, linking."""
    cols = ("recall@1", "recall@5", "recall@10", "recall@20", "recall@50", "ndcg@10")
    head = (
        "| row | n | "
        + " | ".join(c.replace("recall", "R").replace("ndcg", "NDCG") for c in cols)
        + " |"
    )
    sep = "|---|---|" + "---|" * len(cols)
    split = ", ".join(f"{k} {v}" for k, v in report["split"].items())
    lines = [
        f"# ReDial ({report['dataset']}): conversational recommendation",
        "",
        f"Protocol: {report['protocol']}.",
        "",
        f"Split: {split}.",
        "",
        "95% intervals: bootstrap over dialogues. Reported dialogues only.",
        "",
        head,
        sep,
    ]
    for name, e in report["rows"].items():
        lines.append(f"| {name} | {e['n']} | " + " | ".join(_fmt(e, c) for c in cols) + " |")
    for name, e in report.get("published", {}).items():
        lines.append(f"| {name} (published) | – | " + " | ".join(_fmt(e, c) for c in cols) + " |")
    lines += ["", "## Per bucket (R@10, NDCG@10, R@50)", ""]
    bnames = list(report.get("bucket_sizes", {}))
    lines.append(
        "| row | " + " | ".join(f"{b} (n={report['bucket_sizes'][b]})" for b in bnames) + " |"
    )
    lines.append("|---|" + "---|" * len(bnames))
    for name, e in report["rows"].items():
        cells = []
        for b in bnames:
            be = e.get("buckets", {}).get(b)
            cells.append(
                "–"
                if not be
                else f"{be['recall@10']:.3f} / {be['ndcg@10']:.3f} / {be['recall@50']:.3f}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences (95% interval)", ""]
    for name, c in report.get("comparisons", {}).items():
        parts = [
            f"{k} {v['diff']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]" for k, v in c.items()
        ]
        lines.append(f"- {name}: " + "; ".join(parts))
    lines += ["", "## Weights (chosen on validation) and validation R@10", ""]
    for name, e in report["rows"].items():
        val = e.get("validation", {}).get("recall@10")
        shown = f" (validation R@10 {val:.3f})" if val is not None else ""
        lines.append(
            f"- {name}: " + ", ".join(f"{k} {v:g}" for k, v in e["weights"].items()) + shown
        )
    llm = report.get("llm")
    if llm:
        lines += ["", "## LLM rows", ""]
        lines.append(
            f"- {llm['reranker']}, model {llm['model']}, top {llm['top_n']} of the hybrid "
            f"+ validation-dialogue prior re-ranked (candidates quoted as title, year and genres); "
            f"{llm['validation_samples_scored']} validation and "
            f"{llm['reported_samples_scored']} reported samples scored (seeded subsample)"
        )
        lines.append(
            f"- alpha {llm['alpha']:g} (agent.rerank.tuning.tune_alpha: 0 unless the validation "
            "NDCG@10 gain is significant); validation NDCG@10 by alpha: "
            + ", ".join(f"{a}: {v:.3f}" for a, v in llm["alpha_table"].items())
        )
        st = llm.get("stats", {})
        lines.append(
            f"- {st.get('scored_prompts', 0)} prompts scored in {st.get('llm_seconds', 0)} s, "
            f"{st.get('cached_prompts', 0)} read from the cache ({llm.get('cache')})"
        )
    lk = report.get("linking", {})
    lines += ["", "## Mention linking vs prev_entity", "", f"State: {report.get('state')}.", ""]
    for part, v in lk.items():
        lines.append(
            f"- {part}: {v['found']} of {v['prev_entity_films']} legal prev_entity films found "
            f"(recall {v['recall']:.3f}); {v['linked']} linked (precision {v['precision']:.3f})"
        )
    lines += ["", "## In-domain information used", ""]
    lines += [f"- {v}" for v in report.get("in_domain", {}).values()]
    lines += ["", f"Command: `{report.get('command', 'fusionrec eval --dataset redial')}`; "
              f"{report.get('seconds', 0):.0f} s on a shared 2-core CPU."]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out: str | Path) -> None:
    """`out` as JSON and the same name with `.md` as Markdown."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    path.with_suffix(".md").write_text(to_markdown(report))
