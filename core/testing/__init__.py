"""What a plugin's tests need from the platform: tiny synthetic task files, named and formatted as the CS224N
release's (written on demand by :mod:`core.testing.tiny_data`, never committed) and pytest fixtures that train
a task on them with the tiny random-init encoder (:mod:`core.testing.fixtures`, a pytest plugin the distribution
installs)."""
