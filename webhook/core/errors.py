"""Named exceptions of the service, one line each."""


class VoteError(Exception):
    """Base class of this service's errors."""


class ConfigError(VoteError):
    """A configuration value is missing or malformed."""


class PollFileError(VoteError):
    """The poll file cannot be read or does not describe valid polls."""


class UnknownPoll(VoteError):
    """No poll has the given id."""


class BadCallback(VoteError):
    """A Viber callback is not valid JSON or lacks a field the service needs."""


class ViberApiError(VoteError):
    """Viber's REST API refused a request or could not be reached."""


class UnreadableReceiver(VoteError):
    """A sealed Viber id does not open with this service's secret."""
