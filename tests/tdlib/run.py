#!/usr/bin/env python3
"""TDLib, the real client, through feint to five fake DCs on loopback.

TDLib (PyPI `tdjson`) runs `testProxy` once per DC id 1..5 with feint as its MTProto proxy
(an `ee` FakeTLS secret). feint routes DC N by `--dc N=127.0.0.1:PORT_N` to a fake DC here,
which decodes feint's keyless obfuscated2 header (docs/PROTOCOL.md §5.5), reads TDLib's first
padded-intermediate frame, checks it is an unencrypted `req_pq_multi`, and answers `resPQ` with
a public-key fingerprint TDLib does not know. TDLib must then report the unknown fingerprint.

`--direct` skips feint: each fake DC is itself the proxy, with a `dd` secret (obfs2 keyed with
the secret, no TLS). It checks this script and TDLib's behaviour without feint.

Run it inside a network namespace that has only loopback (tests/tdlib.rs does:
`unshare --net -- sh -c 'ip link set lo up && exec .venv/bin/python tests/tdlib/run.py ...'`),
since TDLib may dial Telegram's real addresses on its own. Every wait here is bounded.
Exit status 0 when every expectation held; the report is printed as JSON on stdout.
"""

import argparse
import hashlib
import hmac
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import tdjson

KEY = bytes(range(16))
DOMAIN = b"www.example.com"
EE_SECRET = "ee" + KEY.hex() + DOMAIN.hex()
DD_SECRET = "dd" + KEY.hex()

REQ_PQ_MULTI = 0xBE7E8EF1
RES_PQ = 0x05162463
VECTOR_LONG = 0x1CB5C415
PQ = 0x17ED48941A08F981
UNKNOWN_FINGERPRINT = 0x1122334455667788

# What TDLib 1.8.69 answers to testProxy when the resPQ holds only an unknown fingerprint:
# found by running this script, and written by `PublicRsaKeySharedMain::get_rsa_key`
# (tdlib/td td/telegram/net/PublicRsaKeySharedMain.cpp), with the fingerprint as a signed
# decimal in braces.
EXPECTED_ERROR = f"Unknown Main fingerprints {{{UNKNOWN_FINGERPRINT}}}"
EXPECTED_ERROR_CODE = 400

SOCKET_TIMEOUT = 20.0
FEINT_START_TIMEOUT = 15.0
TEST_PROXY_TIMEOUT = 10  # seconds, passed to TDLib
RESPONSE_TIMEOUT = 30.0  # per testProxy call, ours
DC_IDS = (1, 2, 3, 4, 5)

# nginx 1.22's answer to a TDLib hello (ServerHello, CCS, four encrypted records). The front
# here replays it to every hello, so feint learns nginx's shape and TDLib gets a reply shaped
# like nginx's (issue 8).
NGINX_FLIGHT = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                                 "nginx-1.22", "flight-to-tdlib-003.bin"), "rb").read()
FEINT_LEARN_TIMEOUT = 10.0


def hybrid_flight(flight):
    """`flight` with its ServerHello rebuilt as a front with ML-KEM would send it: key_share for
    X25519MLKEM768 (0x11ec) with 1088 bytes of ciphertext and 32 of X25519, random here."""
    length = int.from_bytes(flight[3:5], "big")
    body, rest = flight[5:5 + length], flight[5 + length:]
    at = 4 + 2 + 32
    at += 1 + body[at]
    head = bytearray(body[:at + 3])  # up to the cipher suite and compression
    extensions = bytearray()
    extensions += bytes.fromhex("002b00020304")
    share = os.urandom(1088 + 32)
    extensions += bytes.fromhex("0033") + (4 + len(share)).to_bytes(2, "big")
    extensions += bytes.fromhex("11ec") + len(share).to_bytes(2, "big") + share
    hello = head + len(extensions).to_bytes(2, "big") + extensions
    hello[1:4] = (len(hello) - 4).to_bytes(3, "big")
    return flight[:3] + len(hello).to_bytes(2, "big") + bytes(hello) + rest


def ctr(key, iv):
    """AES-256-CTR with a 128-bit big-endian counter; the same object encrypts and decrypts."""
    return Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()


def accept_header(header, secret):
    """The acceptor's side of docs/PROTOCOL.md §5.2 (with secret) or §5.5 step 3 (without)."""
    forward = header[8:56]
    reverse = forward[::-1]

    def key(material):
        return hashlib.sha256(material[:32] + secret).digest() if secret else material[:32]

    receive = ctr(key(forward), forward[32:48])
    send = ctr(key(reverse), reverse[32:48])
    plain = receive.update(header)
    return plain[56:60], struct.unpack("<h", plain[60:62])[0], receive, send


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return data


def tl_bytes(value):
    """TL `bytes` of at most 253 bytes: length byte, value, zero padding to 4."""
    out = bytes([len(value)]) + value
    return out + b"\0" * (-len(out) % 4)


def res_pq(nonce):
    server_nonce = os.urandom(16)
    body = struct.pack("<I", RES_PQ) + nonce + server_nonce + tl_bytes(PQ.to_bytes(8, "big"))
    body += struct.pack("<Iiq", VECTOR_LONG, 1, UNKNOWN_FINGERPRINT)
    # A server message id: unix time in the high 32 bits, ≡ 1 mod 4 for a response.
    msg_id = (int(time.time() * (1 << 32)) & ~3) | 1
    message = struct.pack("<qqi", 0, msg_id, len(body)) + body
    padding = os.urandom(os.urandom(1)[0] % 16)
    frame = struct.pack("<I", len(message) + len(padding)) + message + padding
    return frame, server_nonce


class FakeDc:
    """One listener; every connection is handled by `serve` and logged in `self.connections`."""

    def __init__(self, expected_dc, secret=None):
        self.expected_dc = expected_dc
        self.secret = secret
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(1.0)
        self.port = self.listener.getsockname()[1]
        self.connections = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def accept_loop(self):
        for _ in range(100_000):
            if self.stopping:
                return
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            log = {"events": []}
            with self.lock:
                self.connections.append(log)
            threading.Thread(target=self.serve, args=(sock, log), daemon=True).start()

    def serve(self, sock, log):
        sock.settimeout(SOCKET_TIMEOUT)
        try:
            header = read_exact(sock, 64)
            tag, dc, receive, send = accept_header(header, self.secret)
            log["tag"] = tag.hex()
            log["dc_id"] = dc
            for _ in range(16):
                length_bytes = receive.update(read_exact(sock, 4))
                length = struct.unpack("<I", length_bytes)[0] & 0x7FFFFFFF
                if length > 1 << 20:
                    raise ValueError(f"frame length {length}")
                frame = receive.update(read_exact(sock, length))
                event = {"frame_len": length}
                log["events"].append(event)
                auth_key_id, msg_id, data_len = struct.unpack("<qqi", frame[:20])
                event["auth_key_id"] = auth_key_id
                event["msg_id"] = msg_id
                event["data_len"] = data_len
                data = frame[20:20 + data_len]
                if auth_key_id != 0 or len(data) != data_len or len(data) < 4:
                    event["note"] = "not an unencrypted message"
                    continue
                constructor = struct.unpack("<I", data[:4])[0]
                event["constructor"] = f"{constructor:#010x}"
                event["padding"] = length - 20 - data_len
                if constructor == REQ_PQ_MULTI and data_len >= 20:
                    # TDLib 1.8.69 sends msg_id 0 and random bytes after the nonce, so the
                    # message is longer than the 20 bytes of req_pq_multi itself.
                    nonce = data[4:20]
                    event["message"] = "req_pq_multi"
                    event["nonce"] = nonce.hex()
                    event["bytes_after_nonce"] = data_len - 20
                    answer, server_nonce = res_pq(nonce)
                    sock.sendall(send.update(answer))
                    log["events"].append({
                        "sent": "resPQ",
                        "server_nonce": server_nonce.hex(),
                        "pq": f"{PQ:#x}",
                        "fingerprints": [f"{UNKNOWN_FINGERPRINT:#018x}"],
                    })
            log["end"] = "frame limit"
        except EOFError as e:
            log["end"] = f"EOF ({e})"
        except socket.timeout:
            log["end"] = "timeout"
        except Exception as e:  # noqa: BLE001 - recorded for the report
            log["end"] = f"error: {e!r}"
        finally:
            sock.close()

    def stop(self):
        self.stopping = True
        self.listener.close()
        self.thread.join(timeout=5)


def hello_verifies(data):
    """True if `data` starts with a whole hello record signed with KEY (PROTOCOL.md §2.2)."""
    if len(data) < 43 or data[0] != 0x16:
        return False
    end = 5 + int.from_bytes(data[3:5], "big")
    if len(data) < end:
        return False
    record = bytearray(data[:end])
    random = bytes(record[11:43])
    record[11:43] = bytes(32)
    digest = hmac.new(KEY, bytes(record), hashlib.sha256).digest()
    return digest[:28] == random[:28]


class RecordingFront:
    """The fronting target: answers every TLS hello with nginx's flight and records whether the
    hello was signed with our key. TDLib's hellos are; feint's probe of the front is not. TDLib
    must never be fronted."""

    def __init__(self, flight):
        self.flight = flight
        self.dc = FakeDc(expected_dc=None)
        self.dc.serve = self.serve
        self.port = self.dc.port
        self.connections = self.dc.connections

    def serve(self, sock, log):
        sock.settimeout(5.0)
        received = b""
        try:
            for _ in range(1000):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                whole = len(received) >= 5 and len(received) >= 5 + int.from_bytes(
                    received[3:5], "big")
                if "genuine_hello" not in log and received[0] == 0x16 and whole:
                    log["genuine_hello"] = hello_verifies(received)
                    sock.sendall(self.flight)
        except OSError:
            pass
        log["received_len"] = len(received)
        sock.close()

    def fronted(self):
        """Connections that may be TDLib's: all but those that sent an unsigned hello, and
        those that carried no byte (feint dials the front at accept and closes that dial
        unused once the hello verifies)."""
        return [c for c in self.connections
                if c.get("genuine_hello") is True
                or (c.get("genuine_hello") is None and c.get("received_len"))]

    def stop(self):
        self.dc.stop()


class Feint:
    def __init__(self, binary, dcs, front_port):
        argv = [binary, "run", "--bind", "127.0.0.1:0", "--front", f"127.0.0.1:{front_port}",
                "--handshake-timeout", "5s", "-v"]
        for dc_id, dc in dcs.items():
            argv += ["--dc", f"{dc_id}=127.0.0.1:{dc.port}"]
        argv.append(EE_SECRET)
        self.argv = argv
        self.lines = []
        self.lines_queue = queue.Queue()
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for stream, tag in ((self.process.stdout, "stdout: "), (self.process.stderr, "")):
            threading.Thread(target=self.collect, args=(stream, tag), daemon=True).start()
        self.port = None
        deadline = time.monotonic() + FEINT_START_TIMEOUT
        while self.port is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise RuntimeError("feint did not print 'listening on':\n" + "\n".join(self.lines))
            try:
                line = self.lines_queue.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.process.poll() is not None and self.lines_queue.empty():
                    raise RuntimeError(f"feint exited {self.process.returncode}:\n"
                                       + "\n".join(self.lines))
                continue
            if "listening on " in line:
                self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        self.learned = self.wait_for("answers a TDLib hello", FEINT_LEARN_TIMEOUT)

    def wait_for(self, needle, timeout):
        """The first output line containing `needle`, waiting up to `timeout`; None if none."""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            found = next((line for line in list(self.lines) if needle in line), None)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)
        return None

    def collect(self, stream, tag):
        for raw in stream:
            line = tag + raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            self.lines_queue.put(line)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def td_request(client_id, request, extra):
    request = dict(request, **{"@extra": extra})
    tdjson.td_send(client_id, json.dumps(request).encode())
    deadline = time.monotonic() + RESPONSE_TIMEOUT
    updates = []
    while time.monotonic() < deadline:
        raw = tdjson.td_receive(1.0)
        if raw is None:
            continue
        answer = json.loads(raw)
        if answer.get("@extra") == extra:
            return answer, updates
        updates.append(answer.get("@type"))
    return {"@type": "timeout", "message": f"no answer in {RESPONSE_TIMEOUT} s"}, updates


def close_tdlib(client_id):
    """Closes the TDLib instance and waits, bounded, until it says so: exiting with TDLib's
    threads still running can abort the interpreter (seen once: SIGABRT after a passing run)."""
    tdjson.td_send(client_id, json.dumps({"@type": "close"}).encode())
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        raw = tdjson.td_receive(0.5)
        if raw is None:
            continue
        state = json.loads(raw).get("authorization_state", {}).get("@type")
        if state == "authorizationStateClosed":
            return "closed"
    return "close timed out"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--feint", help="path of the feint binary")
    mode.add_argument("--direct", action="store_true", help="no feint: fake DCs are dd proxies")
    parser.add_argument("--td-log", help="write TDLib's log (verbosity 3) to this file")
    parser.add_argument("--hybrid-front", action="store_true",
                        help="the front answers in X25519MLKEM768, as one with ML-KEM would")
    args = parser.parse_args()

    td_log = args.td_log or os.path.join(tempfile.mkdtemp(prefix="feint-tdlib-"), "td.log")
    tdjson.td_execute(json.dumps({"@type": "setLogStream", "log_stream": {
        "@type": "logStreamFile", "path": td_log, "max_file_size": 10 << 20,
        "redirect_stderr": False}}).encode())
    tdjson.td_execute(json.dumps({"@type": "setLogVerbosityLevel",
                                  "new_verbosity_level": 3}).encode())

    secret = KEY if args.direct else None
    dcs = {dc_id: FakeDc(dc_id, secret) for dc_id in DC_IDS}
    front = RecordingFront(hybrid_flight(NGINX_FLIGHT) if args.hybrid_front else NGINX_FLIGHT)
    feint = None
    report = {"mode": "direct" if args.direct else "feint", "tdjson": tdjson.__version__,
              "td_log": td_log, "dcs": {}}
    failures = []
    try:
        if not args.direct:
            feint = Feint(args.feint, dcs, front.port)
            report["feint_argv"] = feint.argv[:-1] + ["<secret>"]
            report["feint_learned"] = feint.learned
            if feint.learned is None:
                failures.append("feint did not learn the front's flight")
        client_id = tdjson.td_create_client_id()
        report["td_client_id"] = client_id
        for dc_id in DC_IDS:
            if args.direct:
                port, proxy_secret = dcs[dc_id].port, DD_SECRET
            else:
                port, proxy_secret = feint.port, EE_SECRET
            request = {"@type": "testProxy",
                       "proxy": {"@type": "proxy", "server": "127.0.0.1", "port": port,
                                 "type": {"@type": "proxyTypeMtproto", "secret": proxy_secret}},
                       "dc_id": dc_id, "timeout": TEST_PROXY_TIMEOUT}
            started = time.monotonic()
            answer, _ = td_request(client_id, request, f"dc{dc_id}")
            elapsed = round(time.monotonic() - started, 3)
            # The DC thread may still be writing its log when TDLib answers; wait, bounded.
            for _ in range(50):
                if all("end" in c for c in dcs[dc_id].connections):
                    break
                time.sleep(0.1)
            with dcs[dc_id].lock:
                connections = [dict(c) for c in dcs[dc_id].connections]
            entry = {"tdlib_answer": answer, "seconds": elapsed, "dc_connections": connections}
            report["dcs"][dc_id] = entry
            check(dc_id, entry, failures)
        if front.fronted():
            failures.append(f"feint fronted {len(front.fronted())} connection(s): "
                            f"{front.connections}")
    finally:
        if "td_client_id" in report:
            report["td_close"] = close_tdlib(report["td_client_id"])
        if feint:
            feint.stop()
            report["feint_output"] = feint.lines[-50:]
        for dc in dcs.values():
            dc.stop()
        front.stop()

    report["failures"] = failures
    print(json.dumps(report, indent=2, default=str))
    if failures:
        print(f"FAILED: {len(failures)} failure(s)", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 1
    print(f"tdlib: {len(DC_IDS)} passed, 0 failed", file=sys.stderr)
    return 0


def check(dc_id, entry, failures):
    answer = entry["tdlib_answer"]
    connections = entry["dc_connections"]
    if not connections:
        failures.append(f"DC {dc_id}: no connection reached the fake DC; TDLib said {answer}")
        return
    first = connections[0]
    if first.get("tag") != "dddddddd":
        failures.append(f"DC {dc_id}: tag {first.get('tag')}")
    if first.get("dc_id") != dc_id:
        failures.append(f"DC {dc_id}: header carried DC id {first.get('dc_id')}")
    events = first.get("events", [])
    if not events or events[0].get("message") != "req_pq_multi":
        failures.append(f"DC {dc_id}: first frame is not req_pq_multi: {events[:1]}")
    if not any(e.get("sent") == "resPQ" for e in events):
        failures.append(f"DC {dc_id}: resPQ not sent")
    if answer.get("@type") != "error":
        failures.append(f"DC {dc_id}: TDLib answered {answer}, expected an error")
    elif (answer.get("code"), answer.get("message")) != (EXPECTED_ERROR_CODE, EXPECTED_ERROR):
        failures.append(f"DC {dc_id}: TDLib said {answer.get('code')} "
                        f"{answer.get('message')!r}, expected {EXPECTED_ERROR_CODE} "
                        f"{EXPECTED_ERROR!r}")


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalization, which races TDLib's own threads.
    os._exit(status)
