"""The project's own exceptions: each message tells the user what is wrong and what to do."""


class ModelForgeError(Exception):
    """Base class; anything raised as this is shown to the user as is, without a traceback."""


class ConfigError(ModelForgeError):
    """A job configuration is invalid."""


class DatasetError(ModelForgeError):
    """A dataset cannot be read or does not fit the task."""


class ModelLoadError(ModelForgeError):
    """A model or tokenizer cannot be loaded."""


class UnavailableError(ModelForgeError):
    """A provider, strategy or feature cannot run on this machine."""


class NotReadyError(ModelForgeError):
    """Something being prepared in the background (the demo model's build) is not ready yet: try again shortly."""


class JobError(ModelForgeError):
    """A job does not exist or cannot take the requested action in its current state."""


class DatabaseError(ModelForgeError):
    """The job store cannot be opened or reached."""


class JobCancelled(ModelForgeError):
    """Raised inside a worker when the user cancelled the job before training started."""
