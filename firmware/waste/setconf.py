"""A change of the bin's config (shell, `config` command): validated as a
whole by dev.config with the bin section's rule, persisted, applied to the
cycle. Its own module so that neither a wake nor the shell loads more than
this for it."""


def set_config(c, p):
    """Validate and persist config changes for cycle c; ValueError keeps all."""
    from dev import config
    from waste import conf
    config.SCHEMA["bin"] = conf.schema_rule
    new = config.apply(c.cfg, p)
    c.cfg = new
    c.s = conf.from_config(new)[0]
