//! The help texts of every command, kept apart from the parser that they describe; a test in
//! `cli.rs` checks that every flag the parser accepts appears here.

pub const HELP: &str = "\
feint: a tiny FakeTLS MTProto proxy for Telegram, with domain fronting

Usage:
  feint run [OPTIONS] SECRET
      Serve Telegram clients that hold SECRET.
  feint generate-secret [--base64] DOMAIN
      Print a fresh ee secret that imitates TLS to DOMAIN.
  feint access [--qr] --public ADDR[:PORT] SECRET
      Print the tg:// and https://t.me links for SECRET.
  feint doctor [OPTIONS] SECRET
      Check this machine, with `run`'s options, before sharing the links.
  feint help [COMMAND]
      Print this help or a command's help.

Options:
  -h, --help       Print help (also `feint COMMAND --help`)
  -V, --version    Print the version

Quick start:
  feint generate-secret example.com
  feint run --public 203.0.113.7 SECRET
";

pub const RUN_HELP: &str = "\
Usage: feint run [OPTIONS] SECRET

Serve Telegram clients that hold SECRET, an ee (FakeTLS) secret in hex or base64.
A connection that fails the handshake is relayed to the front, so a prober sees a real site.

Options:
  -b, --bind ADDR:PORT
      Listen on ADDR:PORT; repeat for several listeners (-b 0.0.0.0:443 -b [::]:443).
      Given at all, it replaces the default. [default: 0.0.0.0:443]
      --dc ID=ADDR:PORT
      Send DC ID (1 to 5) and its media DC -ID to ADDR:PORT instead of Telegram's
      address; repeatable.
      --front HOST[:PORT]
      Where failed handshakes go: a DNS name, an IPv4 or an [IPv6] address.
      [default: the secret's domain, port 443]
      --prefer-ip MODE
      Which DC addresses to dial: prefer-ipv4, prefer-ipv6, only-ipv4 or only-ipv6.
      [default: prefer-ipv4]
      --time-skew DURATION
      Largest accepted difference between a client's clock and ours. [default: 5m]
      --replay-cache SIZE
      Memory that remembers recent handshakes, so a captured one cannot be replayed:
      bytes, or a number with B, KiB, MiB or GiB; at least 4KiB. [default: 4MiB]
      --max-connections N
      Connections open at once; new ones wait in the listen backlog until one
      closes. [default: 8192]
      --client-mss BYTES
      Set TCP_MAXSEG on the listeners (88 to 1460): clients then send their hello in
      segments of this size, which some censors' boxes do not reassemble. Costs more
      packets on every upload. [default: the system's]
      --max-connections-per-ip N
      Connections one client address (an IPv6 /64) may have open at once; more are
      closed at once. 0 means no limit. [default: 512]
      --handshake-timeout DURATION
      Time a client has to complete its handshake. [default: 10s]
      --idle-timeout DURATION
      Close a connection after this long without traffic. [default: 5m]
      --threads N
      Event loops; 0 means one per CPU feint may use. There are never more loops
      than --max-connections. [default: 0]
      --buffers N
      I/O buffers of 48.5 KiB in all, shared by the connections of each event loop;
      idle connections hold none. [default: 192]
      --public ADDR[:PORT]
      The address clients dial, printed in the links at start; repeat for several
      (--public 203.0.113.7 --public [2001:db8::1]). The port defaults to the first
      --bind's. feint never asks a third party for its address.
      --qr
      Also draw the tg:// link as a QR code at start, for a phone to scan.
      --metrics ADDR:PORT
      Serve Prometheus metrics at http://ADDR:PORT/metrics; keep it on loopback or a
      private network. [default: off]
      --stats-every DURATION
      Log a summary of the traffic this often; 0 turns it off. [default: 1h]
      --allow FILE
      Serve only client addresses in FILE: CIDR lines (IPv4 or IPv6, # comments, FireHOL
      .netset files as they are). Others see the front. Reloaded on SIGHUP.
      --block FILE
      Front client addresses in FILE, in the same format; wins over --allow. Reloaded
      on SIGHUP.
      --proxy-protocol
      Require a PROXY protocol v1 or v2 header (HAProxy send-proxy, nginx proxy_protocol)
      on every connection and use its client address; a connection without one is closed.
      --front-proxy-protocol
      Send a PROXY protocol v2 header to the front, so the site sees the client's address.
      --upstream socks5://[USER:PASS@]HOST[:PORT]
      Dial DCs through this SOCKS5 proxy. USER and PASS (1 to 255 bytes each) are taken
      literally, without percent-decoding; PASS may contain ':' and '@'. [default port: 1080]
      --front-via-upstream
      Dial the front through --upstream as well; without it the front is dialled directly.
      --no-front-probe
      Do not connect to the front (at start and every 5 minutes) to learn how it
      answers a TDLib hello; answer clients with the default reply instead.
  -v, --verbose
      Log one line per connection outcome; without it feint logs start, stop and errors.
  -h, --help
      Print this help.

DURATION is a whole number with ms, s, m or h (500ms, 10s, 5m, 1h); a bare number is seconds.
Timeouts are at least 100ms (the timer's tick); --time-skew is whole seconds, as hello times are.
";

pub const GENERATE_SECRET_HELP: &str = "\
Usage: feint generate-secret [--base64] DOMAIN

Print a fresh ee secret: 16 random bytes from the OS and DOMAIN, the site whose TLS feint
imitates and where failed handshakes go. Pick a real HTTPS site that is not blocked.

Options:
      --base64    Print base64url instead of hex (base64 links are reported broken on iOS).
  -h, --help      Print this help.
";

pub const ACCESS_HELP: &str = "\
Usage: feint access [--qr] --public ADDR[:PORT] SECRET

Print the tg://proxy and https://t.me/proxy links for SECRET, with the secret in hex.

Options:
      --public ADDR[:PORT]
      The address clients dial: a DNS name, an IPv4 or an [IPv6] address; repeat for
      several. Required; feint never asks a third party for its address.
      [default port: 443]
      --qr
      Also draw the tg:// link as a QR code, for a phone to scan.
  -h, --help
      Print this help.
";

pub const DOCTOR_HELP: &str = "\
Usage: feint doctor [OPTIONS] SECRET

Check that this machine is ready to serve SECRET, with the same OPTIONS as `feint run`
(see `feint run --help`). It talks only to the front, the DCs and the local listener, and
prints one line per check, OK, WARN or FAIL, with a fix for each problem:
  clock     our clock against a DC's (more than --time-skew/2 off fronts every client)
  front     TLS 1.3, group, cipher and record count of its answer to a TDLib hello
  dns       the secret's domain against --public
  DC N      TCP connect time to each DC address --prefer-ip allows
  listen    each --bind address, and the open-file limit against --max-connections
  itself    with feint running on the port: probes without the secret get the front's
            answer, a genuine hello gets a reply that verifies
Exits 1 if any check fails.
";
