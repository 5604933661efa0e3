# Opens N TLS (or plain) connections to HOST:PORT, finishes each handshake
# and one echo, then holds them idle until stdin closes.
import socket, ssl, sys
host, port, n, mode, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca) if mode == "tls" else None
held = []
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    if ctx:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    held.append(s)
print("held", n, flush=True)
sys.stdin.read()
