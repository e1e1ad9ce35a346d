"""The one error the protocol layer raises for input it cannot accept."""


class ProtocolError(ValueError):
    """The bytes (or values to be rendered) are not a valid message."""
