# The types a handler sees (what componentize-py generates as `wit_world` from the WIT
# contract cmq:push@0.2.0), for an editor's completion and type checks.
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional, Union

class Format(Enum):
    JSON = 0
    SIMPLIFIED = 1

@dataclass
class Message:
    message_id: str
    request_id: Optional[str]
    tags: List[str]
    topic_owner: Optional[str]
    topic_name: Optional[str]
    subscription_name: Optional[str]
    publish_time: Optional[int]
    body: bytes
    format: Format
    attempt: Optional[int]

@dataclass
class Decision_Ack: ...

@dataclass
class Decision_Retry:
    value: str

@dataclass
class Decision_Drop:
    value: str

Decision = Union[Decision_Ack, Decision_Retry, Decision_Drop]
