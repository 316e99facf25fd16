"""Experiment configs: YAML files with inheritance, overrides and strict checks."""

from recon.config.loader import ConfigError, dump_config, load_config, parse_value
from recon.config.schema import SCHEMA

__all__ = ["ConfigError", "SCHEMA", "dump_config", "load_config", "parse_value"]
