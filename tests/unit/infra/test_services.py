"""Each service's generated configuration: Kafka's server.properties, cassandra.yaml, JVM options."""

from __future__ import annotations

import yaml

from aura.settings import Settings
from infra import host, services


def test_kafka_properties_are_kraft_combined_mode_on_the_configured_ports(tmp_path):
    s = Settings().replace(home=tmp_path, kafka_bootstrap="127.0.0.1:19092", kafka_controller_port=19093)
    props = dict(line.split("=", 1) for line in services.kafka_properties(s, host.Paths(tmp_path)).splitlines()
                 if line)
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "data" / "kafka")
    assert props["offsets.topic.replication.factor"] == "1"


def test_cassandra_yaml_points_every_directory_into_the_data_dir(tmp_path):
    s = Settings().replace(home=tmp_path, cassandra_port=19042, cassandra_storage_port=17000)
    text = services.cassandra_yaml(s, host.Paths(tmp_path))
    data = tmp_path / "data" / "cassandra"
    for key in ("commitlog_directory", "saved_caches_directory", "hints_directory", "cdc_raw_directory"):
        assert f"{key}: {data}/" in text
    assert "native_transport_port: 19042" in text
    assert "storage_port: 17000" in text
    assert "auto_snapshot: false" in text


def test_jvm_options_carry_the_java17_module_flags():
    flags = (host.INFRA_DIR / "conf" / "cassandra-jvm17.options").read_text()
    for needed in ("--add-exports java.base/jdk.internal.misc=ALL-UNNAMED",
                   "--add-opens java.base/sun.nio.ch=ALL-UNNAMED", "-Dio.netty.tryReflectionSetAccessible=true"):
        assert needed in flags


def test_the_stacks_batch_warning_thresholds_cover_the_worker_batches(tmp_path):
    """The worker packs AURA_CASSANDRA_BATCH_PARTITIONS partitions and BATCH_KIB KiB per UNLOGGED
    batch; the local node must not warn about (and make the driver log) every one of them."""
    s = Settings().replace(home=tmp_path)
    conf = yaml.safe_load(services.cassandra_yaml(s, host.Paths(tmp_path)))
    assert conf["unlogged_batch_across_partitions_warn_threshold"] >= s.cassandra.batch_partitions
    # the worker bounds a batch's values; the node counts its cells, overhead included (up to ~2x)
    assert int(conf["batch_size_warn_threshold"].removesuffix("KiB")) >= 2 * s.cassandra.batch_kib
