"""The one exception type the CLI turns into a single clear line and a non-zero exit."""


class FlywheelError(Exception):
    """A failure the user can act on; its message says what to do."""
