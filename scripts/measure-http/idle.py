# Idle memory per connection: RSS growth of the daemon per N open, idle connections
# (tcp:// idle after one echo; http:// keep-alive after one request; WebSocket after one message).
import socket, subprocess, sys, time, os, base64
BIN = sys.argv[1]; N = int(sys.argv[2])
p = subprocess.Popen([BIN, "serve", "tcp://127.0.0.1:0", "http://127.0.0.1:0", "--max-connections", "20000"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
eps = []
for line in p.stdout:
    line = line.strip()
    if line == "ready": break
    eps.append(line.split(" ", 1)[1])
def port(e): return int(e.rsplit(":", 1)[1])
tcp, http = port(eps[0]), port(eps[1])
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
def recv_until(s, end):
    d = b""
    while not d.endswith(end) and end not in d:
        d += s.recv(65536)
    return d
def open_tcp():
    s = socket.create_connection(("127.0.0.1", tcp)); s.sendall(b"x" * 64); recv_until(s, b"x" * 64); return s
def open_http():
    s = socket.create_connection(("127.0.0.1", http)); s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    d = recv_until(s, b"\r\n\r\n")
    while not d.rstrip().endswith(b"}"): d += s.recv(65536)
    return s
KEY = base64.b64encode(os.urandom(16))
def open_ws():
    s = socket.create_connection(("127.0.0.1", http))
    s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    recv_until(s, b"\r\n\r\n")
    s.sendall(bytes([0x82, 0x80 | 64, 1, 2, 3, 4]) + bytes(64)); d = b""
    while len(d) < 66: d += s.recv(100)
    return s
name = sys.argv[3]; fn = {"tcp": open_tcp, "http": open_http, "ws": open_ws}[name]
for _ in [0]:
    time.sleep(0.3); before = rss(); conns = [fn() for _ in range(N)]; time.sleep(0.5); after = rss()
    print(f"{name}: {(after - before) * 1024 / N:.0f} B per idle connection (RSS {before} -> {after} KiB, N={N})")
    for c in conns: c.close()
    time.sleep(0.5)
p.terminate(); p.wait(10)
