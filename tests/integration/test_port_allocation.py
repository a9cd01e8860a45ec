"""``free_port`` and ``cdn.ports.PortAllocator`` on a real kernel: ports outside the
ephemeral range, never handed out twice, reserved against another process."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cdn.port_ranges import listening_port_pool
from cdn.ports import EPHEMERAL_RANGE_FILE, PortAllocator, ephemeral_range
from cdn.processes import free_port


def test_free_port_lies_outside_the_kernels_ephemeral_range() -> None:
    kernel = ephemeral_range()
    if kernel is None:
        pytest.skip(f"{EPHEMERAL_RANGE_FILE} is not readable here")
    low, high = kernel
    ports = [free_port() for _ in range(50)]
    assert not [p for p in ports if low <= p <= high], (kernel, ports)


def test_ports_come_from_outside_the_range_in_the_given_file(tmp_path: Path) -> None:
    proc_file = tmp_path / "ip_local_port_range"
    proc_file.write_text("12000\t60000\n")
    assert ephemeral_range(proc_file) == (12000, 60000)
    allocator = PortAllocator(listening_port_pool(ephemeral_range(proc_file)))
    ports = [allocator.allocate() for _ in range(100)]
    assert all(10000 <= p < 12000 or 60000 < p <= 65535 for p in ports), ports


def test_an_unreadable_range_file_means_unknown(tmp_path: Path) -> None:
    assert ephemeral_range(tmp_path / "missing") is None


def test_repeated_calls_give_distinct_ports_though_each_is_released_at_once() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_a_port_something_listens_on_is_skipped() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_port()))
        busy.listen()
        port = busy.getsockname()[1]
        allocator = PortAllocator([range(port, port + 2)], start=0)
        if not _bindable(port + 1):
            pytest.skip(f"port {port + 1} is in use here")
        assert allocator.allocate() == port + 1


def test_an_exhausted_pool_raises() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_port()))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match="no free port"):
            PortAllocator([range(port, port + 1)]).allocate()


_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from cdn.ports import PortAllocator
    pool = [range(int(sys.argv[1]), int(sys.argv[2]))]
    allocator = PortAllocator(pool, start=0, lock_path=Path(sys.argv[3]))
    print(" ".join(str(allocator.allocate()) for _ in range(20)), flush=True)
    sys.stdin.read()  # hold the reservations until the parent is done
""")


def test_another_process_on_the_same_sequence_gets_other_ports(tmp_path: Path) -> None:
    """Same pool, same start: only the lock file keeps the two processes apart."""
    lock_path = tmp_path / "ports.lock"
    first = free_port()
    pool = [range(first, first + 200)]
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(pool[0].start), str(pool[0].stop), str(lock_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2])
    try:
        assert child.stdout is not None
        theirs = {int(p) for p in child.stdout.readline().split()}
        assert len(theirs) == 20
        allocator = PortAllocator(pool, start=0, lock_path=lock_path)
        ours = {allocator.allocate() for _ in range(20)}
        assert len(ours) == 20
        assert not ours & theirs
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
