"""CPU seconds of a process tree, read from /proc (Linux), for the benches that count the CPU
their servers, workers and actors spend."""

from __future__ import annotations

import os


def tree_cpu(pid: int) -> dict[tuple[int, str], float]:
    """utime + stime in seconds of process `pid` and each of its live descendants (every
    thread), keyed by (pid, start time) so a reused pid is a new process."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float, str]] = {}  # pid -> (parent, cpu seconds, start time)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()  # after "pid (comm)"
        except OSError:  # exited meanwhile
            continue
        # state ppid ... utime stime (fields 14, 15 of proc(5)) ... starttime (field 22)
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, fields[19])
    children: dict[int, list[int]] = {}
    for child, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(child)
    tree, todo = {}, [pid]
    while todo:
        p = todo.pop()
        if p in stats and (p, stats[p][2]) not in tree:
            tree[p, stats[p][2]] = stats[p][1]
            todo += children.get(p, [])
    return tree


def tree_processes(pid: int) -> dict[tuple[int, str], tuple[float, str]]:
    """`tree_cpu` with each process's role: what it calls itself now (`process_role`; Ray
    retitles its workers per task and actor)."""
    return {
        key: (cpu, "this process" if key[0] == pid else process_role(key[0]))
        for key, cpu in tree_cpu(pid).items()
    }


def process_role(pid: int) -> str:
    """A short name for what process `pid` does: a Ray worker's title up to its first "(" or
    space ("ray::MapWorker", "ray::IDLE", "ray::Map"), else its program or script name
    ("raylet", "gcs_server", "agent.py")."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"
    if argv[0].startswith("ray::"):
        return argv[0].split("(")[0].split()[0]
    prog = os.path.basename(argv[0])
    if prog.startswith("python"):  # the script or module it runs
        rest = [a for a in argv[1:] if not a.startswith("-")]
        if "-m" in argv[1:]:
            return argv[argv.index("-m") + 1]
        if "-c" in argv[1:]:  # multiprocessing's spawned and forkserver children
            return "python -c"
        return os.path.basename(rest[0]) if rest else prog
    return prog
