"""marlids: multi-agent reinforcement-learning intrusion detection for IoT networks.

The distribution ships the top-level packages ``edge`` (per-site packet → observation pipeline),
``fog`` (multi-agent environment and coordinator), ``training`` (MAPPO, labeled data),
``cloud`` (analyst API) and ``experiments``; this package holds the ``marlids`` command, ``marlids demo``,
and two leaves every part may import: :mod:`marlids.paths` (paths and bundled assets) and
:mod:`marlids.settings` (options generated from each part's settings object, ``--config FILE``).
"""

__version__ = "0.1.0"
