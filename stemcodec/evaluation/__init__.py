"""The evaluation behind eval/*.py (those scripts are argparse and one call into here).

Rooms: stem_sets.py (sets of piece folders to score: a corpus's real stems, a model's
generations), consistency.py (per-stem figures of any stems), report.py (the report: every
set scored alike, bootstrap intervals, Fréchet distances, report.md and report.json),
report_plots.py (its two figures), classifier_training.py (the data and checks of the
identity metric's classifier; the loop is eval/train_classifier.py). The metrics themselves
are stemcodec/metrics/.
"""
