"""Command line front end of the Visual Turing Test kit (Han, paper 003, sec. 3.2.3 and 4.2.5, Tables 1 and 3):
:mod:`common.evaluation.visual_turing` (make) and :mod:`common.evaluation.visual_turing_score` (score).

Examples::

    # 50 real vs 50 synthetic T1c slices (Table 1, one sequence): the real set has 4 channels, the synthetic 1
    python scripts/visual_turing_test.py make --real data/brain_mr_2d/datalist.json \
        --synthetic eval/synthetic/datalist.json --channel 1 vtt_t1c
    # Table 3: 50 real and 50 synthetic images of each class, asked real/synthetic and tumour/non-tumour
    python scripts/visual_turing_test.py make --real data/brain_mr_2d/datalist.json \
        --synthetic "[eval/tumour/datalist.json,eval/non_tumour/datalist.json]" --classes \
        --n_real 100 --n_synthetic 100 --channel 1 vtt_pggan
    # after the readers sent their answer files
    python scripts/visual_turing_test.py score answers_A.json answers_B.json --key vtt_t1c/answer_key.json vtt_t1c/scores

``make`` writes ``OUT_DIR/app/index.html`` (give this one file to the readers: it opens in any browser from the file
system, with no server and no network) and ``OUT_DIR/answer_key.json`` (keep it: the app never reads it) and prints
the study id. ``score`` writes ``vtt_scores.json``, ``vtt_table.md`` and ``vtt_confusion.png`` in its last
positional argument (or ``--out_dir``) and prints the Markdown tables.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import fire
from common.evaluation.visual_turing import make_study
from common.evaluation.visual_turing_score import format_markdown, score_study

logger = logging.getLogger(__name__)


def make(out_dir: str, real: str | Sequence[str], synthetic: str | Sequence[str], **options: Any) -> str:
    """Sample, render and shuffle the cases and write the reader app and the answer key.

    Args:
        out_dir: the study folder (``app/index.html`` and ``answer_key.json``).
        real: the real datalist(s).
        synthetic: the synthetic datalist(s).
        options: the keyword arguments of :func:`common.evaluation.visual_turing.make_study` (``--n_real``,
            ``--n_synthetic``, ``--classes``, ``--channel``, ``--window``, ``--box_key``, ``--crop``, ``--seed``...).

    Returns:
        The study id.
    """
    result = make_study(real, synthetic, out_dir, **options)
    for warning in result["warnings"]:
        logger.warning(warning)
    print(f"app for the readers: {result['app']}\nanswer key (keep it): {result['key']}")
    return result["study_id"]


def score(*paths: str, key: str, out_dir: str | None = None) -> str:
    """Score answer files: ``score ANSWERS... --key KEY OUT_DIR`` (the last positional path is the output folder
    unless ``--out_dir`` is given). Returns the Markdown tables."""
    answers = list(paths)
    if out_dir is None:
        if len(answers) < 2:
            raise SystemExit(
                "usage: score ANSWERS... --key KEY OUT_DIR (at least one answer file and the output folder)"
            )
        out_dir = answers.pop()
    result = score_study(answers, key, out_dir)
    print(f"written: {', '.join(result['files'].values())}")
    return format_markdown(result)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    fire.Fire({"make": make, "score": score})
