#!/usr/bin/python3
"""Lets a job inside a lab guest ask QEMU for QMP commands (e.g. qom-set of the nvme's smart_critical_warning).

The guest cannot reach the QMP socket, which is on the host; it shares the run directory with the host over 9p. The
job writes one QMP command as JSON to qmp/req-NAME.json (write to a temporary name, then rename); this bridge sends it
and writes QEMU's answer (the "return" or "error" object, events skipped) to qmp/resp-NAME.json, the same way.
Usage: qmp-bridge.py RUN_DIR (QEMU listens on RUN_DIR/qmp.sock). It ends when QEMU closes the socket.
"""
import json
import os
import socket
import sys
import time


def main(run):
    path = os.path.join(run, "qmp.sock")
    spool = os.path.join(run, "qmp")
    os.makedirs(spool, exist_ok=True)
    deadline = time.time() + 60
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            break
        except OSError:
            s.close()
            if time.time() > deadline:
                return 1
            time.sleep(0.1)
    f = s.makefile("rw", encoding="utf-8")

    def answer():
        while True:
            line = f.readline()
            if not line:
                raise EOFError
            msg = json.loads(line)
            if "return" in msg or "error" in msg:
                return msg

    f.readline()  # the greeting
    f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
    f.flush()
    answer()
    s.settimeout(None)
    while True:
        names = sorted(n for n in os.listdir(spool) if n.startswith("req-") and n.endswith(".json"))
        for name in names:
            req = os.path.join(spool, name)
            try:
                with open(req, encoding="utf-8") as r:
                    command = json.load(r)
            except (OSError, ValueError) as e:
                reply = {"error": {"class": "BridgeError", "desc": f"unreadable request: {e}"}}
            else:
                f.write(json.dumps(command) + "\n")
                f.flush()
                try:
                    reply = answer()
                except EOFError:
                    return 0
            tmp = os.path.join(spool, "." + name.replace("req-", "resp-"))
            with open(tmp, "w", encoding="utf-8") as w:
                json.dump(reply, w)
            os.rename(tmp, os.path.join(spool, name.replace("req-", "resp-")))
            os.remove(req)
        # QEMU gone: the socket reads end of file.
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                return 0
        except BlockingIOError:
            pass
        except OSError:
            return 0
        finally:
            s.setblocking(True)
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
