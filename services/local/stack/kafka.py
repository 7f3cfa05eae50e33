"""A single-node Apache Kafka broker in KRaft mode, from Maven Central jars (no Docker).

The broker artifact brings no logging backend, so the resolved classpath adds one: reload4j for
3.x, log4j2 for 4.x. Jars land in ``<home>/cache/kafka-<version>/lib`` once; data, logs and the
JVM's class-data-sharing archive (which cuts later starts) live under ``<home>``.
"""

from __future__ import annotations

import base64
import shutil
import subprocess  # noqa: S404 - resolving jars and formatting storage are subprocesses
import uuid
from dataclasses import dataclass
from pathlib import Path

from config.settings import KafkaSettings, StackSettings
from services.local.stack.process import ManagedProcess, StackError

LOGGING_3X = [
    ("org.slf4j", "slf4j-reload4j", "1.7.36"),
    ("ch.qos.reload4j", "reload4j", "1.2.25"),
]
LOGGING_4X = [
    ("org.apache.logging.log4j", "log4j-slf4j2-impl", "2.24.3"),
    ("org.apache.logging.log4j", "log4j-core", "2.24.3"),
]


@dataclass(frozen=True, slots=True)
class KafkaLayout:
    """Every path and port of the local broker, derived from settings."""

    version: str
    host: str
    port: int
    controller_port: int
    heap_mb: int
    home: Path
    cache_root: Path

    @classmethod
    def from_settings(cls, stack: StackSettings, kafka: KafkaSettings) -> KafkaLayout:
        host, port = kafka.first_server()
        return cls(
            version=stack.kafka_version,
            host=host,
            port=port,
            controller_port=stack.kafka_controller_port,
            heap_mb=stack.kafka_heap_mb,
            home=stack.home.resolve(),
            cache_root=(stack.cache_dir or stack.home / "cache").resolve(),
        )

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def cache_dir(self) -> Path:
        return self.cache_root / f"kafka-{self.version}"

    @property
    def lib_dir(self) -> Path:
        return self.cache_dir / "lib"

    @property
    def data_dir(self) -> Path:
        return self.home / "kafka" / "data"

    @property
    def conf_dir(self) -> Path:
        return self.home / "kafka" / "conf"

    @property
    def cds_archive(self) -> Path:
        # One archive per JDK and Kafka version: a mismatched archive is ignored by the JVM
        # anyway, but naming it so avoids pointless warnings.
        return self.home / "kafka" / f"cds-{self.version}-{_java_version_tag()}.jsa"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            name="kafka",
            pidfile=self.home / "run" / "kafka.pid",
            logfile=self.home / "logs" / "kafka.log",
            marker=f"-Dstreamlearn.home={self.home}",
        )


def pom_xml(version: str) -> str:
    """A throwaway POM whose runtime dependencies are the broker plus a logging backend."""
    major = int(version.split(".")[0])
    deps = [("org.apache.kafka", "kafka_2.13", version)]
    deps += LOGGING_3X if major < 4 else LOGGING_4X
    rows = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>streamlearn</groupId><artifactId>kafka-runtime</artifactId>"
        "<version>1</version>\n"
        f"  <dependencies>\n{rows}\n  </dependencies>\n</project>\n"
    )


def server_properties(layout: KafkaLayout) -> str:
    """The broker's configuration: KRaft combined mode on one node, sized for a small machine.

    Example:
        >>> layout = KafkaLayout("3.9.1", "127.0.0.1", 9092, 9093, 512, Path("/s"), Path("/c"))
        >>> "controller.quorum.voters=1@127.0.0.1:9093" in server_properties(layout)
        True
    """
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "listeners": (
            f"PLAINTEXT://{layout.host}:{layout.port},CONTROLLER://{layout.host}:"
            f"{layout.controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://{layout.host}:{layout.port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.quorum.voters": f"1@{layout.host}:{layout.controller_port}",
        "log.dirs": str(layout.data_dir),
        "num.partitions": "3",
        "auto.create.topics.enable": "false",
        # One broker: internal topics cannot be replicated, and transactions need these to
        # initialise at all.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # The cleaner's default 128 MiB dedupe buffer is a quarter of our heap.
        "log.cleaner.dedupe.buffer.size": str(4 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.retention.check.interval.ms": "60000",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


LOG4J_3X = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.ConsoleAppender
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaConfig=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.config=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
"""

LOG4J2_4X = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.config.name = org.apache.kafka.common.config
logger.config.level = warn
"""


def ensure_jars(layout: KafkaLayout) -> Path:
    """Resolve the broker's runtime classpath from Maven Central once; returns the lib dir."""
    done = layout.cache_dir / ".complete"
    if done.exists():
        return layout.lib_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven ('mvn') is needed to fetch Kafka's jars: apt-get install maven")
    layout.cache_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(layout.lib_dir, ignore_errors=True)
    (layout.cache_dir / "pom.xml").write_text(pom_xml(layout.version))
    cmd = [
        mvn, "-q", "-B", "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={layout.lib_dir}",
    ]
    result = subprocess.run(  # noqa: S603 - fixed argv
        cmd, cwd=layout.cache_dir, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StackError(
            f"resolving Kafka {layout.version} jars with Maven failed:\n"
            f"{(result.stdout + result.stderr)[-2000:]}"
        )
    done.write_text(layout.version + "\n")
    return layout.lib_dir


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("Java is needed for Kafka: apt-get install openjdk-17-jre-headless")
    return java


def _java_version_tag() -> str:
    try:
        out = subprocess.run(  # noqa: S603
            [_java(), "-version"], capture_output=True, text=True, check=False
        ).stderr
    except StackError:
        return "nojava"
    first = out.splitlines()[0] if out else "unknown"
    return "".join(c if c.isalnum() else "_" for c in first)[:60]


def write_config(layout: KafkaLayout) -> tuple[Path, Path]:
    """Write server.properties and the logging config; returns both paths."""
    layout.conf_dir.mkdir(parents=True, exist_ok=True)
    props = layout.conf_dir / "server.properties"
    props.write_text(server_properties(layout))
    if layout.major < 4:
        log_conf = layout.conf_dir / "log4j.properties"
        log_conf.write_text(LOG4J_3X)
    else:
        log_conf = layout.conf_dir / "log4j2.properties"
        log_conf.write_text(LOG4J2_4X)
    return props, log_conf


def _log_flag(log_conf: Path) -> str:
    if log_conf.name.startswith("log4j2"):
        return f"-Dlog4j2.configurationFile={log_conf}"
    return f"-Dlog4j.configuration=file:{log_conf}"


def format_storage(layout: KafkaLayout, props: Path, log_conf: Path) -> bool:
    """Format the KRaft metadata directory unless done already; returns True when formatted."""
    if (layout.data_dir / "meta.properties").exists():
        return False
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    cluster_id = kafka_cluster_id()
    cmd = [
        _java(), "-Xmx256m", "-XX:TieredStopAtLevel=1", _log_flag(log_conf),
        "-cp", f"{layout.lib_dir}/*", "kafka.tools.StorageTool",
        "format", "-t", cluster_id, "-c", str(props), "--ignore-formatted",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise StackError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
    return True


def kafka_cluster_id() -> str:
    """A cluster id as Kafka's ``random-uuid`` makes it: URL-safe base64 of 16 random bytes.

    Like Kafka's ``Uuid.randomUuid`` it never starts with '-': the storage tool's argument
    parser would take such an id for an option (one start in 64 failed before this).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def broker_argv(layout: KafkaLayout, props: Path, log_conf: Path) -> list[str]:
    """The JVM command line of the broker: small heap, serial GC, quick start."""
    cds = (
        f"-XX:SharedArchiveFile={layout.cds_archive}"
        if layout.cds_archive.exists()
        else f"-XX:ArchiveClassesAtExit={layout.cds_archive}"
    )
    return [
        _java(),
        f"-Xms{min(256, layout.heap_mb)}m",
        f"-Xmx{layout.heap_mb}m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Xshare:auto",
        cds,
        "-Djava.awt.headless=true",
        _log_flag(log_conf),
        f"-Dkafka.logs.dir={layout.home / 'logs'}",
        layout.process.marker,
        "-cp",
        f"{layout.lib_dir}/*",
        "kafka.Kafka",
        str(props),
    ]
