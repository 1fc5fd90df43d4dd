"""The seed's library demo: run a command as a limited, isolated job, stream its output, stop it
after two seconds and print its final status. Needs root.

    sudo .venv/bin/python examples/demo.py [--mnt MAJ:MIN] [--state-dir DIR] find / -name '*.txt'
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading

import tjob


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnt", "-mnt", help="MAJ:MIN of the disk to throttle (default: /'s)")
    parser.add_argument("--state-dir", default=None, help="default: a new temporary directory")
    parser.add_argument("--seconds", type=float, default=2.0, help="stop the job after this")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.command or ["find", "/", "-name", "*.txt"]
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="tjob-demo-")

    # The seed's limits: 20% of a CPU, 20 MB of memory, 20 MiB/s of disk each way.
    with tjob.Engine(state_dir, device=args.mnt) as engine:
        job = engine.start(tjob.JobSpec(argv))
        print(job.id, flush=True)
        print(list(job.spec.argv), flush=True)

        def stop_later() -> None:
            try:
                job.wait(timeout=args.seconds)
            except TimeoutError:
                job.stop(grace=1)

        stopper = threading.Thread(target=stop_later)
        stopper.start()
        out = sys.stdout.buffer
        for chunk in job.output(follow=True):
            out.write(chunk.data)
        out.flush()
        stopper.join()
        st = job.status()
        ran = (st.ended_at or 0) - (st.started_at or st.created_at)
        end = f"Exit:{st.exit_code}" if st.exit_code is not None else f"Signal:{st.signal_name}"
        print(
            f"\nJobId={st.id}\nStatus={{Pid:{st.pid} Cmd:{' '.join(st.argv)} State:{st.state} "
            f"Ran:{ran:.3f}s {end} Stopped:{st.stopped} OOMKilled:{st.oom_killed} "
            f"CPU:{st.usage.cpu_seconds or 0:.3f}s PeakMem:{st.usage.memory_peak_bytes}B "
            f"Error:{st.error or ''}}}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
