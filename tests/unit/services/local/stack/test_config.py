from __future__ import annotations

from pathlib import Path

from config.settings import KafkaSettings, RedisSettings, StackSettings
from services.local.stack.kafka import (
    KafkaLayout,
    broker_argv,
    kafka_cluster_id,
    pom_xml,
    server_properties,
)
from services.local.stack.redis import RedisLayout, redis_conf


def layout(**overrides: object) -> KafkaLayout:
    stack = StackSettings(home=Path("/tmp/sl"), **overrides)  # type: ignore[arg-type]
    return KafkaLayout.from_settings(stack, KafkaSettings(bootstrap_servers="127.0.0.1:19092"))


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_server_properties_are_kraft_single_node_with_transactions_enabled() -> None:
    p = props(server_properties(layout(kafka_controller_port=19093)))
    assert p["process.roles"] == "broker,controller"
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert p["transaction.state.log.replication.factor"] == "1"
    assert p["transaction.state.log.min.isr"] == "1"
    assert p["offsets.topic.replication.factor"] == "1"
    assert p["auto.create.topics.enable"] == "false"
    assert p["log.dirs"] == "/tmp/sl/kafka/data"


def test_broker_heap_is_capped_and_process_is_recognisable() -> None:
    lay = layout(kafka_heap_mb=384)
    argv = broker_argv(lay, Path("/x/server.properties"), Path("/x/log4j.properties"))
    assert "-Xmx384m" in argv and "-XX:+UseSerialGC" in argv
    assert lay.process.marker in argv
    assert argv[-2:] == ["kafka.Kafka", "/x/server.properties"]


def test_jar_cache_can_be_shared_between_homes() -> None:
    lay = layout(cache_dir=Path("/shared/cache"))
    assert lay.lib_dir == Path("/shared/cache/kafka-3.9.1/lib")
    assert layout().lib_dir == Path("/tmp/sl/cache/kafka-3.9.1/lib")


def test_pom_brings_a_logging_backend_for_each_major() -> None:
    assert "slf4j-reload4j" in pom_xml("3.9.1") and "log4j-core" not in pom_xml("3.9.1")
    assert "log4j-core" in pom_xml("4.1.1") and "reload4j" not in pom_xml("4.1.1")


def test_redis_conf_persists_with_aof_every_second_on_loopback() -> None:
    lay = RedisLayout.from_settings(
        StackSettings(home=Path("/tmp/sl")), RedisSettings(url="redis://127.0.0.1:16379/0")
    )
    conf = redis_conf(lay)
    assert "port 16379" in conf and "bind 127.0.0.1" in conf
    assert "appendonly yes" in conf and "appendfsync everysec" in conf
    assert "dir /tmp/sl/redis" in conf
    assert lay.process.marker == "/tmp/sl/redis/redis.conf"


def test_cluster_ids_never_start_with_a_dash() -> None:
    ids = [kafka_cluster_id() for _ in range(5000)]  # ~78 would start with '-' by chance
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
