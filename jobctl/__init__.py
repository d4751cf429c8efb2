"""jobctl: a cron-like job scheduler with TOML tasks and SQLite run history."""

__version__ = "0.1.0"
