"""Configuration: typed model, YAML and inventory loading, errors that point at the rule."""

from monitor.config.errors import ConfigError, Problem
from monitor.config.loader import load_config
from monitor.config.model import Config, EndpointConfig, Kind, Mailbox, ServerConfig, TlsMode

__all__ = [
    "Config",
    "ConfigError",
    "EndpointConfig",
    "Kind",
    "Mailbox",
    "Problem",
    "ServerConfig",
    "TlsMode",
    "load_config",
]
