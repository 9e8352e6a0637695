"""A flooding agent, run as its own process by ``test_node_flood.py``: PUTs valid claims to one
node's API at a fixed rate until SIGTERM, then prints ``{"sent": n, "refused": m}`` (m: answered
429). A process of its own, so its requests never hold the GIL of the process that times the
honest updates."""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.error
import urllib.request


def main() -> None:
    api, rate = sys.argv[1], float(sys.argv[2])
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    start, sent, refused = time.monotonic(), 0, 0
    while not stopping:
        body = json.dumps({"namespace": "flood", "key": f"f{sent}", "value": sent}).encode()
        request = urllib.request.Request(
            api + "/v1/store/items", data=body, method="PUT",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=15):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 429:
                raise
            refused += 1
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
    print(json.dumps({"sent": sent, "refused": refused}), flush=True)


if __name__ == "__main__":
    main()
