"""Python client of Strata's agent API."""
from .client import (Agent, Client, Event, Message, SendResult, StrataError, Task,
                     TaskEvent)

__all__ = ["Agent", "Client", "Event", "Message", "SendResult", "StrataError", "Task",
           "TaskEvent"]
