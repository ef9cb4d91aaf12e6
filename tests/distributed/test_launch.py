"""Topology from --processes / accelerate configs, the torchrun command line, failure messages."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from dlm.engine.distributed.launch import ERRORS_DIR, rank_failure, torchrun_args
from dlm.engine.distributed.topology import Topology, resolve_topology
from dlm.errors import UsageError


def config(tmp_path: Path, text: str, name: str = "accelerate.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ----------------------------------------------------------------- topology


def test_processes_alone_is_this_host():
    assert resolve_topology(None, None) == Topology()
    two = resolve_topology(2, None)
    assert two.processes == two.local_processes == 2 and two.distributed and two.main_machine
    assert two.describe() == "2 processes on this host"
    with pytest.raises(UsageError):
        resolve_topology(0, None)


def test_a_two_machine_gpu_config(tmp_path):
    path = config(
        tmp_path,
        """compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 2
num_processes: 16
machine_rank: 1
main_process_ip: 10.0.0.1
main_process_port: 29511
mixed_precision: bf16
gpu_ids: all
""",
    )
    t = resolve_topology(None, path)
    assert (t.processes, t.machines, t.machine_rank, t.local_processes) == (16, 2, 1, 8)
    assert (t.main_address, t.main_port, t.sharding) == ("10.0.0.1", 29511, "auto")
    assert not t.main_machine and t.gpu_ids is None
    assert "this is machine 1" in t.describe()
    assert resolve_topology(16, path) == t
    with pytest.raises(UsageError, match="disagrees"):
        resolve_topology(8, path)


def test_fsdp_config_asks_for_sharding(tmp_path):
    path = config(
        tmp_path,
        "distributed_type: FSDP\nnum_processes: 2\nuse_cpu: true\n"
        "fsdp_config:\n  fsdp_version: 2\n",
    )
    t = resolve_topology(None, path)
    assert t.sharding == "fsdp" and t.processes == 2 and t.machines == 1


def test_the_users_default_config(tmp_path, monkeypatch):
    import dlm.engine.distributed.topology as topology

    default = tmp_path / "default_config.yaml"
    monkeypatch.setattr(topology, "default_config_path", lambda: default)
    with pytest.raises(UsageError, match="accelerate config"):
        resolve_topology(None, "default")
    default.write_text("distributed_type: MULTI_CPU\nnum_processes: 3\n")
    assert resolve_topology(None, "default").processes == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("distributed_type: DEEPSPEED\nnum_processes: 2\n", "DEEPSPEED is not supported"),
        ("distributed_type: MULTI_GPU\nnum_processes: 3\nnum_machines: 2\n", "not a multiple"),
        (
            "distributed_type: MULTI_GPU\nnum_processes: 4\nnum_machines: 2\n",
            "main_process_ip",
        ),
        ("distributed_type: MULTI_GPU\nnum_processes: -1\n", "to the command line"),
        ("num_processes: 2\n", "cannot read"),
        (
            "distributed_type: MULTI_GPU\nnum_processes: 4\nnum_machines: 2\nmachine_rank: 2\n"
            "main_process_ip: h\nmain_process_port: 1\n",
            "machine_rank 2",
        ),
        (
            "distributed_type: MULTI_GPU\nnum_processes: 4\nnum_machines: 2\n"
            "main_process_ip: h\nmain_process_port: 1\nrdzv_backend: c10d\n",
            "rank 0 on machine 0",
        ),
    ],
)
def test_configs_dlm_cannot_run_are_misuse(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):
        resolve_topology(None, config(tmp_path, text))


def test_a_missing_config_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        resolve_topology(None, str(tmp_path / "nope.yaml"))


# ----------------------------------------------------------------- torchrun


def _arg(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_torchrun_args_on_one_host(tmp_path):
    args = torchrun_args(Topology(processes=2), tmp_path / "spec.json", "run-x", verbose=False)
    assert _arg(args, "--nproc-per-node") == "2" and _arg(args, "--max-restarts") == "0"
    assert _arg(args, "--rdzv-endpoint") == "localhost:0"  # a free port, like --standalone
    assert _arg(args, "--redirects") == "0:0,1:3"  # rank 0 on the console, the rest to files
    assert args[-3:] == ["--module", "dlm.engine.distributed.worker", str(tmp_path / "spec.json")]
    verbose = torchrun_args(Topology(processes=2), tmp_path / "s", "r", verbose=True)
    assert "--redirects" not in verbose


def test_torchrun_args_across_machines(tmp_path):
    static = Topology(
        processes=16, machines=2, machine_rank=1, main_address="10.0.0.1", main_port=29511
    )
    args = torchrun_args(static, tmp_path / "spec.json", "dlm-x", verbose=False)
    assert _arg(args, "--nnodes") == "2" and _arg(args, "--nproc-per-node") == "8"
    assert _arg(args, "--rdzv-backend") == "static"
    assert (_arg(args, "--master-addr"), _arg(args, "--master-port")) == ("10.0.0.1", "29511")
    assert _arg(args, "--node-rank") == "1"
    assert _arg(args, "--rdzv-conf") == "timeout=600"
    assert _arg(args, "--redirects").startswith("0:3")  # nothing on machine 1's console


def test_torchrun_parses_what_dlm_passes(tmp_path):
    from torch.distributed.run import config_from_args, get_args_parser

    args = get_args_parser().parse_args(
        torchrun_args(Topology(processes=2), tmp_path / "spec.json", "run-x", verbose=False)
    )
    launch, _command, command_args = config_from_args(args)
    assert launch.nproc_per_node == 2 and launch.max_restarts == 0
    assert command_args[-3:] == ["-m", "dlm.engine.distributed.worker", str(tmp_path / "spec.json")]


# ----------------------------------------------------------------- failures


class _Failure:
    def __init__(self, pid: int, exitcode: int, timestamp: int, message: object = ""):
        self.pid, self.exitcode, self.timestamp, self.message = pid, exitcode, timestamp, message


class _ChildFailed:
    def __init__(self, failures):
        self.failures = failures


def _error(run_dir: Path, rank: int, **data) -> None:
    (run_dir / ERRORS_DIR).mkdir(exist_ok=True)
    (run_dir / ERRORS_DIR / f"rank-{rank}.json").write_text(json.dumps({"rank": rank, **data}))


def test_a_killed_rank_is_named_not_the_ones_it_took_down(tmp_path):
    import socket

    _error(
        tmp_path,
        0,
        pid=100,
        host=socket.gethostname(),
        message="training failed at step 3: RuntimeError: Connection reset by peer",
        peer_lost=True,
    )
    exc = _ChildFailed(
        {
            0: _Failure(100, 1, timestamp=5),  # failed first in time, but only as a consequence
            1: _Failure(101, -signal.SIGKILL, timestamp=6),
            2: _Failure(102, -signal.SIGTERM, timestamp=6),
        }
    )
    error = rank_failure(exc, tmp_path, Topology(processes=3), "v0001 remains current")
    assert error.message.startswith("rank 1 (pid 101) was killed by SIGKILL")
    assert "nothing was committed, v0001 remains current" in error.message
    assert "rank 0 lost contact with it" in error.message and "rank 2 was stopped" in error.message
    assert "out-of-memory" in error.hint


def test_a_rank_error_carries_its_message_and_hint(tmp_path):
    import socket

    _error(
        tmp_path,
        1,
        pid=7,
        host=socket.gethostname(),
        message="CUDA out of memory",
        hint="lower training.micro_batch_size",
        peer_lost=False,
    )
    exc = _ChildFailed({0: _Failure(6, -signal.SIGTERM, 9), 1: _Failure(7, 1, 9)})
    error = rank_failure(exc, tmp_path, Topology(processes=2), "no adapter was committed")
    assert error.message.startswith("rank 1 (pid 7) failed: CUDA out of memory")
    assert error.hint == "lower training.micro_batch_size"


def test_a_lost_peer_on_another_machine_points_there(tmp_path):
    _error(tmp_path, 0, pid=5, host="this", message="timed out", peer_lost=True)
    exc = _ChildFailed({0: _Failure(5, 1, 3)})
    topology = Topology(processes=4, machines=2, main_address="h", main_port=1)
    error = rank_failure(exc, tmp_path, topology, "v0002 remains current")
    assert "rank 0 (pid 5 on this) failed: timed out" in error.message
    assert "another machine" in error.hint


def test_exit_codes_without_an_error_file(tmp_path):
    exc = _ChildFailed({3: _Failure(9, 2, 1, message={"message": "ValueError: bad"})})
    error = rank_failure(exc, tmp_path, Topology(processes=4), "no adapter was committed")
    assert error.message.startswith("rank 3 (pid 9) exited with code 2: ValueError: bad")


def test_rendezvous_timeout_from_the_environment(tmp_path, monkeypatch):
    from dlm.engine.distributed.launch import rendezvous_timeout, start_failure
    from dlm.errors import TrainError

    monkeypatch.setenv("DLM_RENDEZVOUS_TIMEOUT", "30")
    assert rendezvous_timeout() == 30
    topology = Topology(processes=4, machines=2, main_address="h", main_port=7)
    args = torchrun_args(topology, tmp_path / "spec.json", "r", verbose=False)
    assert _arg(args, "--rdzv-conf") == "timeout=30"
    error = start_failure(TimeoutError("1/2 clients joined"), topology, "v0001 remains current")
    assert "did not all meet at h:7 within 30 s" in error.message
    assert "v0001 remains current" in error.message and "machine_rank" in error.hint
    monkeypatch.setenv("DLM_RENDEZVOUS_TIMEOUT", "soon")
    with pytest.raises(TrainError):
        rendezvous_timeout()


def test_a_rank_that_hangs_is_named_once_the_others_time_out(tmp_path):
    import socket

    _error(
        tmp_path,
        0,
        pid=10,
        host=socket.gethostname(),
        message="training failed at step 4: RuntimeError: ... Timed out waiting 10000ms",
        peer_lost=True,
        time=100.0,
    )
    # the agent SIGTERMs the stuck rank, waits, then SIGKILLs it: long after rank 0 gave up
    exc = _ChildFailed({0: _Failure(10, 1, 100), 1: _Failure(11, -signal.SIGKILL, 131)})
    error = rank_failure(exc, tmp_path, Topology(processes=2), "v0003 remains current")
    assert error.message.startswith("rank 1 (pid 11) stopped responding")
    assert "DLM_COLLECTIVE_TIMEOUT" in error.message
    assert "rank 0 lost contact with it" in error.message
