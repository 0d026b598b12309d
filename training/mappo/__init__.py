"""MAPPO for marlids on RLlib's new API stack: parameter-shared defender actor + centralized critic,
PPO attacker in league self-play."""
