"""Settings from ``SHOP_*`` environment variables, validated at start."""

from config.errors import ConfigError
from config.settings import SETTINGS, Settings

__all__ = ["SETTINGS", "ConfigError", "Settings"]
