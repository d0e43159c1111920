"""Load figures for the web API: concurrent answers equal serial ones, a small request's
latency while a maximum-size request runs, and the server's peak RSS for the largest upload.

Starts ``python app.py --tiny-random`` on a free 127.0.0.1 port (the tests' launcher, with
the default request limits unless ``GROUNDED_SAM_WEB_*`` is set), talks only to it, and
stops it. Bounded: 8 x 5 + 40 small requests, a few large ones; a watchdog kills the server
if its RSS passes ``--rss-cap-gb``. Run by hand (it is not a test):

    python benchmarks/load_web.py [--clients 8] [--requests 5] [--threads 2]

Prints: the CPU, whether 8 concurrent clients x 5 requests got the same JSON as the same 40
requests sent one by one, small-request latencies (quiet, and while a 4096 x 4096 request
runs), the large requests' times, and the server's peak RSS (VmHWM) after each phase.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _app_server import AppServer  # noqa: E402
from _images import blob_image  # noqa: E402

from grounded_sam.service.limits import Limits  # noqa: E402


def rss_kb(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def watchdog(pid: int, cap_kb: int, stop: threading.Event) -> None:
    """Kill the server if it grows past the cap (the machine is shared)."""
    while not stop.wait(0.2):
        try:
            if rss_kb(pid, "VmRSS") > cap_kb:
                print(f"!! server RSS above {cap_kb // 2**20} GB: killed", flush=True)
                subprocess.run(["kill", "-9", str(pid)], check=False)
                return
        except FileNotFoundError:
            return


def largest_grid(limits: Limits, image_size: tuple[int, int]) -> int:
    """The largest points_per_side the server accepts for an image of this size."""
    from grounded_sam.service.limits import LimitExceeded
    from grounded_sam.service.options import check_amg_work

    for pps in range(limits.max_points_per_side, 0, -1):
        try:
            check_amg_work(pps, 0, image_size, limits)
            return pps
        except LimitExceeded:
            continue
    return 1


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=5, help="requests per client")
    p.add_argument("--threads", type=int, default=2, help="the server's --threads")
    p.add_argument("--rss-cap-gb", type=float, default=8.0)
    p.add_argument("--skip-everything", action="store_true", help="no max-size /everything")
    args = p.parse_args()

    from gradio_client import Client, handle_file

    limits = Limits.from_env()
    side = int(limits.max_pixels**0.5)
    tmp = Path(tempfile.mkdtemp(prefix="load-web-"))
    small = []
    for seed in range(args.requests):
        path = tmp / f"small{seed}.png"
        Image.fromarray(blob_image(96, 128, seed=seed)).save(path)
        small.append(str(path))
    big = tmp / "max.png"
    Image.fromarray(
        np.kron(blob_image(side // 16, side // 16), np.ones((16, 16, 1), np.uint8))
    ).save(big, optimize=True)
    print(f"CPU: {cpu_name()}; server threads {args.threads}; limits: {limits.summary()}")
    print(f"largest upload: {side}x{side} PNG, {big.stat().st_size / 1e6:.1f} MB")

    def small_request(client: Client, i: int) -> dict:
        return client.predict(
            image=handle_file(small[i % len(small)]),
            prompt="ball . box",
            box_threshold=0.0,
            text_threshold=0.0,
            api_name="/detect_segment",
        )

    with AppServer(tmp / "app.log", "--threads", str(args.threads)) as server:
        pid = server.proc.pid
        stop = threading.Event()
        threading.Thread(
            target=watchdog, args=(pid, int(args.rss_cap_gb * 2**20), stop), daemon=True
        ).start()
        client = Client(server.url, verbose=False)
        small_request(client, 0)  # models load

        # 1. concurrent == serial
        n = args.clients * args.requests
        t0 = time.perf_counter()
        serial = [small_request(client, i) for i in range(n)]
        t_serial = time.perf_counter() - t0
        clients = [Client(server.url, verbose=False) for _ in range(args.clients)]

        def run_client(c: int) -> list[tuple[int, dict]]:
            ids = range(c, n, args.clients)
            return [(i, small_request(clients[c], i)) for i in ids]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = [r for batch in pool.map(run_client, range(args.clients)) for r in batch]
        t_conc = time.perf_counter() - t0
        equal = sum(serial[i] == r for i, r in results)
        print(
            f"{args.clients} clients x {args.requests} requests: {equal}/{n} answers equal "
            f"to serial; serial {t_serial:.1f} s, concurrent {t_conc:.1f} s; "
            f"peak RSS {rss_kb(pid, 'VmHWM') / 2**20:.2f} GB"
        )

        # 2. small-request latency, quiet and while a maximum-size request runs
        def latencies(count: int, busy: threading.Thread | None = None) -> list[float]:
            out = []
            for i in range(count):
                if busy is not None and not busy.is_alive():
                    break
                t = time.perf_counter()
                small_request(client, i)
                out.append(time.perf_counter() - t)
            return out

        quiet = latencies(10)
        print(f"small request, quiet: median {statistics.median(quiet):.2f} s")
        big_jobs = [
            ("/detect_segment", dict(prompt="ball . box", box_threshold=0.0, text_threshold=0.0)),
        ]
        if not args.skip_everything:
            opts = {"points_per_side": largest_grid(limits, (side, side))}
            big_jobs.append(("/everything", dict(options=opts)))
        for api, kwargs in big_jobs:
            took: dict[str, float | str] = {}

            def run_big(api=api, kwargs=kwargs, took=took) -> None:
                t = time.perf_counter()
                try:
                    r = Client(server.url, verbose=False).predict(
                        image=handle_file(str(big)), api_name=api, **kwargs
                    )
                    took["n"] = len(r["detections"])
                except Exception as e:  # noqa: BLE001 - report, do not hide
                    took["error"] = f"{type(e).__name__}: {e}"
                took["s"] = time.perf_counter() - t

            busy = threading.Thread(target=run_big)
            busy.start()
            time.sleep(0.5)  # let it start
            during = latencies(30, busy)
            busy.join()
            lat = (
                f"median {statistics.median(during):.2f} s, max {max(during):.2f} s"
                if during
                else "none"
            )
            print(
                f"max-size {api} ({side}x{side}{', ' + str(kwargs.get('options', ''))}): "
                f"{took['s']:.1f} s, "
                f"{took.get('n', took.get('error'))} detections; small requests during it: "
                f"{len(during)} done, {lat}; server peak RSS {rss_kb(pid, 'VmHWM') / 2**20:.2f} GB"
            )
        stop.set()


if __name__ == "__main__":
    main()
