# Closed loop: C connections, M round trips of 64 B each (one in flight per connection).
# kind: tcp (raw bytes) or ws (masked binary frames after a handshake).
import socket, selectors, sys, os, base64, time
kind, port, C, M = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
payload = bytes(range(64))
key = bytes([1, 2, 3, 4])
masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
ws_frame = bytes([0x82, 0x80 | 64]) + key + masked
ws_reply = bytes([0x82, 64]) + payload
msg, reply = (payload, payload) if kind == "tcp" else (ws_frame, ws_reply)
sel = selectors.DefaultSelector()
conns = []
for _ in range(C):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if kind == "ws":
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                  + base64.b64encode(os.urandom(16)) + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        d = b""
        while b"\r\n\r\n" not in d: d += s.recv(4096)
    s.setblocking(False)
    conns.append(s)
state = {}
start = time.time()
for s in conns:
    if M > 0:
        s.send(msg); state[s] = [1, b""]; sel.register(s, selectors.EVENT_READ)
done = 0
while len(state) > 0:
    for k, _ in sel.select(30):
        s = k.fileobj; st = state[s]
        st[1] += s.recv(65536)
        while len(st[1]) >= len(reply):
            assert st[1][:len(reply)] == reply, st[1][:len(reply)]
            st[1] = st[1][len(reply):]; done += 1
            if st[0] < M:
                st[0] += 1; s.send(msg)
            elif not st[1]:
                sel.unregister(s); del state[s]; break
el = time.time() - start
print(f"{kind}: {done} echoes in {el:.2f}s")
for s in conns: s.close()
