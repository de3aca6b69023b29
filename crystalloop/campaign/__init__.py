"""The closed loop: learn → propose → run → measure → learn again, over many batches.

* :mod:`~crystalloop.campaign.propose`: :func:`propose` the next batch (NSGA-II on an
  acquisition view of the twin) and :func:`select_batch` (spread along the predicted front).
* :mod:`~crystalloop.campaign.execute`: :func:`execute_recipe`, one recipe through the
  single-batch runner (:func:`crystalloop.control.run`) plus final probe frames.
* :mod:`~crystalloop.campaign.measure`: :func:`measure_images`, D50 from the probe frames.
* :mod:`~crystalloop.campaign.lab`: offline CQAs — :class:`SimulatedLab` (simulated
  backends), :class:`TableLab` (the analyst's table on real hardware).
* :mod:`~crystalloop.campaign.loop`: :func:`run_campaign`, the rounds, resumable.
* :mod:`~crystalloop.campaign.report`: per-round figures and plots.
"""

from crystalloop.campaign._labels import CampaignWarning, campaign_rounds, round_of, run_label
from crystalloop.campaign.execute import execute_recipe, finished_run, recover_recipe
from crystalloop.campaign.lab import DEFAULT_LAB_NOISE, LabRequest, SimulatedLab, TableLab, as_lab
from crystalloop.campaign.loop import DEFAULT_TWIN_OPTIONS, CampaignResult, run_campaign
from crystalloop.campaign.measure import measure_images
from crystalloop.campaign.propose import ACQUISITIONS, propose, select_batch, select_ehvi
from crystalloop.campaign.report import (
    measured_front,
    objective_values,
    plot_campaign,
    round_summary,
)

__all__ = [
    "run_campaign", "CampaignResult", "DEFAULT_TWIN_OPTIONS", "CampaignWarning",
    "propose", "select_batch", "select_ehvi", "ACQUISITIONS",
    "execute_recipe", "recover_recipe", "finished_run", "measure_images",
    "LabRequest", "SimulatedLab", "TableLab", "DEFAULT_LAB_NOISE", "as_lab",
    "round_summary", "plot_campaign", "measured_front", "objective_values",
    "run_label", "round_of", "campaign_rounds",
]
