# 200 garbage "ClientHellos" and 50 real TLS handshakes per second for SECS.
import socket, ssl, sys, threading, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.time() + secs
counts = {"garbage": 0, "handshakes": 0, "failed": 0}
def paced(rate, fn, key):
    step, nxt = 1.0 / rate, time.time()
    while time.time() < end:
        try:
            fn(); counts[key] += 1
        except Exception:
            counts["failed"] += 1
        nxt += step
        time.sleep(max(0, nxt - time.time()))
def garbage():
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
    s.close()
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def handshake():
    with ctx.wrap_socket(socket.create_connection((host, port), timeout=5)) as s:
        s.sendall(b"x"); s.recv(1)
ts = [threading.Thread(target=paced, args=(200, garbage, "garbage")),
      threading.Thread(target=paced, args=(50, handshake, "handshakes"))]
[t.start() for t in ts]; [t.join() for t in ts]
print(counts)
