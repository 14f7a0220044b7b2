#!/usr/bin/env python3
"""Runs `edge-agent run` the way systemd's Type=notify + WatchdogSec= would,
and checks the agent keeps the unit's contract: READY=1 after start-up,
WATCHDOG=1 pings at half the interval, a reload on SIGHUP, STOPPING=1 and
exit 0 when its (finite, synthetic) camera source ends.

    python3 cross/sd-notify-smoke.py -- qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu \
        target-aarch64/.../edge-agent run --config agent.toml

It plays systemd's part: a datagram socket in NOTIFY_SOCKET, WATCHDOG_USEC,
and WATCHDOG_PID set to the agent's own pid (an exec from a shell keeps it;
qemu-user runs the guest in the same process). Exit 0 when every check
passes, 1 otherwise, with the notifications and the agent's log on stdout.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

WATCHDOG_USEC = 2_000_000
DEADLINE_S = float(os.environ.get("SMOKE_DEADLINE_S", "300"))


def main(argv):
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=str(WATCHDOG_USEC))
        log_path = os.path.join(tmp, "agent.log")
        with open(log_path, "w") as log:
            agent = subprocess.Popen(
                ["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", *argv],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            start = time.monotonic()
            seen = []
            hup_sent = False
            while True:
                elapsed = time.monotonic() - start
                if elapsed > DEADLINE_S:
                    agent.kill()
                    print(f"agent still running after {DEADLINE_S:.0f} s: killed")
                    break
                try:
                    message = sock.recv(4096).decode()
                    seen.append((elapsed, message.strip()))
                    print(f"[{elapsed:6.1f} s] notify: {message.strip()}")
                    if message.startswith("READY=1") and not hup_sent:
                        agent.send_signal(signal.SIGHUP)
                        hup_sent = True
                        print(f"[{elapsed:6.1f} s] sent SIGHUP")
                except socket.timeout:
                    if agent.poll() is not None:
                        break
            code = agent.wait()
        with open(log_path) as log:
            output = log.read()

    print("--- agent log (tract's CPU detection lines left out) ---")
    for line in output.splitlines():
        if "tract_linalg" not in line:
            print(line[:300])
    messages = [m for _, m in seen]
    pings = sum(1 for m in messages if m == "WATCHDOG=1")
    checks = [
        ("READY=1 sent", "READY=1" in messages),
        ("WATCHDOG=1 pinged", pings >= 1),
        ("reloaded on SIGHUP", "configuration reloaded" in output),
        ("STOPPING=1 sent", "STOPPING=1" in messages),
        ("exit status 0", code == 0),
    ]
    ok = True
    for name, passed in checks:
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
        ok &= passed
    print(f"{pings} watchdog pings; exit {code}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
