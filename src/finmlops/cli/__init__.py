"""The ``finmlops`` command line: ``finmlops <verb> --help`` documents every command.

Exit codes: 0 success, 1 the work failed (bad data, a failed check), 2 bad usage.
Commands that a machine reads take ``--json`` and then print one JSON document on stdout and nothing else.

One module per stage's verbs; each registers its commands on the one Typer ``app`` when imported, and renders the
typed results its stage returns. The logic lives in the stages.
"""

# isort: off
# Imported in the pipeline's order, which is the order of the groups in finmlops --help.
from finmlops.cli import data, training, models, monitoring, serving, workflow, report, deploy

# isort: on
from finmlops.cli.common import app
from finmlops.cli.main import main
from finmlops.cli.report import Paper

__all__ = [
    "Paper",
    "app",
    "data",
    "deploy",
    "main",
    "models",
    "monitoring",
    "report",
    "serving",
    "training",
    "workflow",
]
