"""The Kafka topics of the system and their creation."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from iopcare.settings import Settings


def topic_layout(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count. Inbound events and their dead letters share the partition count
    so a dead letter lands in the partition of the event it replaces (same key)."""
    return {
        settings.events_topic: settings.topic_partitions,
        settings.dead_letter_topic: settings.topic_partitions,
        settings.alerts_topic: settings.topic_partitions,
    }


def ensure_topics(bootstrap: str, settings: Settings, replication_factor: int = 1) -> list[str]:
    """Create the missing topics; returns the names created. Safe to call from several processes."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="iopcare-admin")
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, partitions, replication_factor)
            for name, partitions in topic_layout(settings).items()
            if name not in existing
        ]
        created: list[str] = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:  # another process won the race
                pass
        return created
    finally:
        admin.close()


def partition_count(bootstrap: str, topic: str) -> int | None:
    """How many partitions ``topic`` has on the broker (its metadata), or None when it does not exist
    (asked without naming it first: a broker that creates topics on request would create it)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="iopcare-admin")
    try:
        if topic not in set(admin.list_topics()):
            return None
        for described in admin.describe_topics([topic]):
            # kafka-python 3 names the topic "name" (its 2.x releases said "topic").
            if described.get("name", described.get("topic")) == topic and not described["error_code"]:
                return len(described["partitions"])
        return None
    finally:
        admin.close()
