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
