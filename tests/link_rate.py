# Measures a TCP link: "serve HOST PORT" prints the goodput in Mbit/s of what one client sends
# (from its first byte to its end); "send HOST PORT BYTES" sends that many bytes. netns_test.sh.
import socket, sys, time
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "serve":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((host, port)); s.listen(1)
    s.settimeout(30)
    c, _ = s.accept(); c.settimeout(30)
    total, first = 0, None
    while True:
        b = c.recv(1 << 20)
        if not b: break
        if first is None: first = time.monotonic()
        total += len(b)
    print("%.3f" % (total * 8 / (time.monotonic() - first) / 1e6))
else:
    c = socket.create_connection((host, port), timeout=30)
    c.sendall(b"\0" * int(sys.argv[4])); c.close()
