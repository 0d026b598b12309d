"""RLlib module IDs of the MAPPO run (imported by the config, the callbacks and the trainer alike).

The ``*_league`` modules are frozen snapshots, refreshed on a schedule (league self-play); ``attacker_random``
is a never-trained attacker (random initial weights), used when ``MappoArgs.random_attacker_share`` > 0.
"""

DEFENDER, ATTACKER, DEFENDER_LEAGUE, ATTACKER_LEAGUE = "defender", "attacker", "defender_league", "attacker_league"
ATTACKER_RANDOM = "attacker_random"
