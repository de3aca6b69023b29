"""crystalloop: closed-loop digital design and control of crystallization processes.

Areas (subpackages): :mod:`crystalloop.hardware` (drivers and the virtual crystallizer),
:mod:`crystalloop.vision` (images → particles → PSD), :mod:`crystalloop.digital_twin`
(CQA models, synthetic augmentation, NSGA-II design) and :mod:`crystalloop.control`
(controllers, safe runner, closed-loop campaign). Shared types: :mod:`crystalloop.profiles`, :mod:`crystalloop.limits`,
:mod:`crystalloop.store`, :mod:`crystalloop.errors`.
"""

from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import DEFAULT_BOUNDS, ProfileBounds, Segment, ThermocycleProfile

__version__ = "0.1.0"

__all__ = ["ThermocycleProfile", "Segment", "ProfileBounds", "DEFAULT_BOUNDS", "ThermostatLimits", "__version__"]
