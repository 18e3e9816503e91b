"""Real Redis topologies on loopback for the `redis+cluster://` and `redis+sentinel://` paths: a three-master
Cluster (`redis-cli --cluster create`), and a master with one replica watched by one Sentinel. Every process is
started on a free port and stopped by PID; readiness is polled under bounded deadlines."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests._redis import RedisServer, free_port

__all__ = ["RedisCluster3", "SentinelSetup"]

SERVICE = "mymaster"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout_s}s")
        time.sleep(0.05)  # polling a readiness condition under a bounded deadline


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port <= 55535 and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class _ClusterNode(RedisServer):
    def argv(self) -> list[str]:
        return [
            *super().argv(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{self.port}.conf",
            "--cluster-node-timeout", "5000",
        ]  # fmt: skip


class _Replica(RedisServer):
    def __init__(self, binary: str, workdir: Path, master_port: int) -> None:
        super().__init__(binary, workdir)
        self.master_port = master_port

    def argv(self) -> list[str]:
        return [*super().argv(), "--replicaof", "127.0.0.1", str(self.master_port)]


class _Sentinel(RedisServer):
    def __init__(self, binary: str, workdir: Path, master_port: int) -> None:
        super().__init__(binary, workdir)
        self.master_port = master_port

    def argv(self) -> list[str]:
        config = self.workdir / f"sentinel-{self.port}.conf"  # Sentinel rewrites its file: one per start
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\nlogfile {self.log}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 2000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        return [self.binary, str(config), "--sentinel"]


class RedisCluster3:
    """Three masters, no replicas, every slot covered."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.nodes = [_ClusterNode(binary, workdir, cluster_port()) for _ in range(3)]
        self.cli = shutil.which("redis-cli") or str(Path(binary).with_name("redis-cli"))

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"  # one startup node: the client finds the rest

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        try:
            subprocess.run(
                [self.cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            wait_until(
                lambda: all(b"cluster_state:ok" in n.command("CLUSTER", "INFO") for n in self.nodes),
                30,
                "cluster_state:ok on every node",
            )
        except BaseException:
            self.stop()
            raise

    def flush(self) -> None:
        for node in self.nodes:
            node.command("FLUSHALL")

    def keys_per_node(self) -> list[int]:
        return [int(n.command("DBSIZE")[1:].split(b"\r\n")[0]) for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelSetup:
    """A master, its replica, and a Sentinel monitoring the master as `mymaster` (quorum 1)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.master = RedisServer(binary, workdir)
        self.replica = _Replica(binary, workdir, self.master.port)
        self.sentinel = _Sentinel(binary, workdir, self.master.port)
        self.servers = {self.master.port: self.master, self.replica.port: self.replica}

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SERVICE}"

    def master_port(self) -> int:
        reply = self.sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(reply.split(b"\r\n")[4])  # *2 $9 127.0.0.1 $5 PORT

    def current_master(self) -> RedisServer:
        return self.servers[self.master_port()]

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        self.sentinel.start()
        try:
            wait_until(
                lambda: b"master_link_status:up" in self.replica.command("INFO", "replication"),
                20,
                "the replica in sync",
            )
            wait_until(
                lambda: str(self.replica.port).encode() in self.sentinel.command("SENTINEL", "REPLICAS", SERVICE),
                30,
                "the sentinel knowing the replica",
            )
        except BaseException:
            self.stop()
            raise

    def failover(self) -> int:
        """Promote the replica (SENTINEL FAILOVER); return the new master's port once the sentinel reports it."""
        before = self.master_port()
        assert self.sentinel.command("SENTINEL", "FAILOVER", SERVICE).startswith(b"+OK")
        wait_until(lambda: self.master_port() != before, 30, "the sentinel reporting a new master")
        new = self.master_port()
        wait_until(lambda: b"role:master" in self.servers[new].command("INFO", "replication"), 20, "the promotion")
        return new

    def flush(self) -> None:
        self.current_master().command("FLUSHALL")

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            server.stop()
