"""The YAML experiment: loading (OmegaConf, overrides), key declarations, and the check before a run."""
