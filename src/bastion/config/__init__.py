"""Configuration: one YAML file, interpolated, validated into typed models."""

from bastion.config.loader import load_config, load_config_text
from bastion.config.model import Config

__all__ = ["Config", "load_config", "load_config_text"]
