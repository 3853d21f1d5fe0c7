"""The built-in encoder architectures, one module per architecture, each a plugin of its own (entry points in
pyproject.toml) providing its :class:`~core.api.Architecture` through ``platform_encoders``."""
