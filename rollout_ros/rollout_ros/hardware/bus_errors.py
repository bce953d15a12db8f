"""The one exception every servo bus raises, whatever its protocol, so the
driver node and FollowerArm handle bus trouble without knowing the family."""


class BusError(RuntimeError):
    """Communication with the servo bus failed or the bus is not what we expect."""
