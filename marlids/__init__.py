"""marlids: multi-agent reinforcement-learning intrusion detection for IoT networks.

The distribution ships the top-level packages ``edge`` (per-site packet → observation pipeline),
``fog`` (multi-agent environment and coordinator), ``training`` (MAPPO, labeled data),
``cloud`` (analyst API) and ``experiments``; this package holds only the ``marlids`` command and
``marlids demo`` (it imports every part; no part imports it).
"""

__version__ = "0.1.0"
