"""Issue 12's outage drill: log at ~200 events/s, stop the server for 30 s while logging goes on
(within the queue), start it again on the same port and store, flush, and count what is stored.

    BITACORA_BIN=target/release/bitacora sdks/python/.venv/bin/python sdks/python/bench/downtime.py
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request

from bitacora import Bitacora

BIN = sys.argv[1] if len(sys.argv) > 1 else os.environ["BITACORA_BIN"]
d = tempfile.mkdtemp()


def start(listen):
    p = subprocess.Popen(
        [BIN, "serve", "--data", d + "/data"],
        env={**os.environ, "BITACORA_LISTEN": listen},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = p.stdout.readline().strip()
    return p, line.split("listening on ")[1]


p, url = start("127.0.0.1:0")
port = url.rsplit(":", 1)[1]
time.sleep(0.5)
key = pathlib.Path(d, "data", "initial-admin-key").read_text().strip()
c = Bitacora(url=url, api_key=key, flush_interval=0.2)
logged = 0


def log_for(seconds):
    global logged
    end = time.time() + seconds
    while time.time() < end:
        c.log(action="drill.downtime", target={"type": "n", "id": str(logged)})
        logged += 1
        time.sleep(0.005)


log_for(5)
p.terminate()
p.wait()
t = time.time()
log_for(30)
down = time.time() - t
p, url2 = start("127.0.0.1:" + port)
log_for(2)
ok = c.flush(timeout=120)
req = urllib.request.Request(
    url + "/v1/events?action=drill.downtime&page=1&per_page=1",
    headers={"Authorization": "Bearer " + key},
)
total = json.load(urllib.request.urlopen(req))["total"]
print(
    f"downtime {down:.1f} s; logged {logged}; stored {total}; lost {logged - total}; "
    f"flushed {ok}; stats {c.stats()}"
)
c.close()
p.terminate()
p.wait()
