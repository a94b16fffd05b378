"""Simulated network traffic: normal sessions, benign look-alikes and attack episodes.

Every function returns a `Rows` batch of numpy columns; nothing here loops per row. The
model is described in `simulator/TRAFFIC_MODEL.md`.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from schemas.firewall import APP_VOCABULARY, CLASS_NAMES, NORMAL

Rows = dict[str, np.ndarray]
ROW_FIELDS = ("t", "src", "dst", "spt", "dpt", "proto", "app", "duration", "out", "in", "label")

ICMP, IGMP, TCP, UDP = 1, 2, 6, 17
APP = {name: code for code, name in enumerate(APP_VOCABULARY)}
LABEL = {name: code for code, name in enumerate(CLASS_NAMES)}
PING_PAYLOADS = (28, 36, 64, 84, 512, 1024, 1472)
SSDP_GROUP = (239 << 24) | (255 << 16) | (255 << 8) | 250
IGMP_GROUP = (224 << 24) | 22
LIMITED_BROADCAST = 0xFFFFFFFF


@dataclass(frozen=True)
class AppProfile:
    """How sessions of one app look: protocol, ports, peer and byte/duration medians."""

    proto: int
    dpt: int  # -1: a random high port
    peer: str  # ext, dns, file, mail, log, host, bcast, ssdp, igmp, allbcast
    out_median: float
    in_median: float
    duration_median: float
    weight: float
    spt: int = -1  # -1: an ephemeral port


# Head weights are set by hand; the long tail falls off as rank**-2.5 (sftp: a handful a day).
_HEAD = {
    "https": AppProfile(TCP, 443, "ext", 900, 12_000, 8, 0.30),
    "domain": AppProfile(UDP, 53, "dns", 70, 180, 0, 0.22),
    "others": AppProfile(TCP, -1, "ext", 400, 2_000, 3, 0.10),
    "http": AppProfile(TCP, 80, "ext", 600, 9_000, 4, 0.07),
    "icmp": AppProfile(ICMP, 0, "host", 84, 84, 0, 0.035, spt=0),
    "snmp": AppProfile(UDP, 161, "host", 90, 300, 0, 0.03),
    "microsoft-ds": AppProfile(TCP, 445, "file", 2_000, 20_000, 15, 0.03),
    "ssdp": AppProfile(UDP, 1900, "ssdp", 350, 0, 0, 0.02),
    "netbios-ssn": AppProfile(TCP, 139, "file", 1_200, 6_000, 10, 0.018),
    "netbios-dgm": AppProfile(UDP, 138, "bcast", 230, 0, 0, 0.015, spt=138),
    "ssh": AppProfile(TCP, 22, "ext", 3_000, 4_000, 60, 0.012),
    "netbios-ns": AppProfile(UDP, 137, "bcast", 78, 0, 0, 0.012, spt=137),
    "ftp": AppProfile(TCP, 21, "ext", 500, 1_500, 20, 0.006),
    "syslog": AppProfile(UDP, 514, "log", 200, 0, 0, 0.006),
    "igmp": AppProfile(IGMP, 0, "igmp", 32, 0, 0, 0.004, spt=0),
}
_TAIL = {
    "h323": (TCP, 1720, "ext"),
    "real-audio": (TCP, 7070, "ext"),
    "pop3": (TCP, 110, "mail"),
    "telnet": (TCP, 23, "host"),
    "smtp": (TCP, 25, "mail"),
    "rtsp": (TCP, 554, "ext"),
    "pptp": (TCP, 1723, "ext"),
    "auth": (TCP, 113, "ext"),
    "roadrunner": (TCP, 553, "ext"),
    "bgp": (TCP, 179, "ext"),
    "isakmp": (UDP, 500, "ext"),
    "rexec": (TCP, 512, "host"),
    "rcmd": (TCP, 514, "host"),
    "finger": (TCP, 79, "ext"),
    "bootps": (UDP, 67, "allbcast"),
    "sql-net": (TCP, 1521, "file"),
    "vdolive": (TCP, 7000, "ext"),
    "irc": (TCP, 6667, "ext"),
    "nntp": (TCP, 119, "ext"),
    "aim": (TCP, 5190, "ext"),
    "rlogin": (TCP, 513, "host"),
    "msn": (TCP, 1863, "ext"),
    "news": (TCP, 144, "ext"),
    "bootpc": (UDP, 68, "allbcast"),
    "snmp-trap": (UDP, 162, "log"),
    "tftp": (UDP, 69, "file"),
    "nfs": (UDP, 2049, "file"),
    "tacacs": (TCP, 49, "ext"),
    "icq": (UDP, 4000, "ext"),
    "sftp": (TCP, 115, "ext"),
}
APP_PROFILES: dict[str, AppProfile] = {
    **_HEAD,
    **{
        name: AppProfile(proto, port, peer, 500, 2_000, 5, 0.004 * (rank + 1) ** -2.5)
        for rank, (name, (proto, port, peer)) in enumerate(_TAIL.items())
    },
}
PORT_TO_APP = {p.dpt: APP[name] for name, p in APP_PROFILES.items() if p.dpt > 0}
SERVICE_PORTS = np.array([*sorted(PORT_TO_APP), 3389, 8080, 3306, 5900, 8443, 111, 135, 993])


@dataclass(frozen=True)
class Network:
    """The simulated site: internal /24s with hosts and servers, and the outside world."""

    subnets: np.ndarray  # base address of each internal /24
    hosts: np.ndarray
    host_weights: np.ndarray
    servers: dict[str, np.ndarray]
    external: np.ndarray
    external_weights: np.ndarray


def ip(a: int, b: int, c: int, d: int) -> int:
    return (a << 24) | (b << 16) | (c << 8) | d


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=float) ** -exponent
    return weights / weights.sum()


def draw_public_ips(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unique addresses outside private, loopback, link-local and multicast ranges."""
    first = rng.choice(np.array([o for o in range(1, 224) if o not in (10, 127, 169, 172, 192)]), n)
    rest = rng.integers(0, 1 << 24, n)
    return np.unique((first.astype(np.int64) << 24) | rest)


def build_network(rng: np.random.Generator, scale: float) -> Network:
    """A site of about 48 /24s at full scale; smaller presets shrink it, keeping per-host rates."""
    n_subnets = max(3, round(48 * scale))
    subnets = np.array([ip(192, 168, 10 + k, 0) for k in range(n_subnets)], dtype=np.int64)
    per_subnet = rng.integers(60, 200, n_subnets)
    hosts = np.concatenate(
        [
            base + 1 + np.sort(rng.choice(253, size, replace=False))
            for base, size in zip(subnets, per_subnet, strict=True)
        ]
    )
    server_pool = rng.permutation(hosts)
    roles = {"dns": 2, "file": 3, "mail": 2, "log": 1, "web": 3, "monitor": 2}
    servers, taken = {}, 0
    for role, count in roles.items():
        servers[role] = server_pool[taken : taken + count]
        taken += count
    external = rng.permutation(draw_public_ips(rng, max(400, round(60_000 * scale))))
    return Network(
        subnets=subnets,
        hosts=hosts,
        host_weights=rng.permutation(zipf_weights(len(hosts), 0.8)),
        servers=servers,
        external=external,
        external_weights=zipf_weights(len(external), 1.1),
    )


def make_rows(n: int, label: str = NORMAL, **columns: np.ndarray | int | float) -> Rows:
    """A batch of n rows; scalar columns are broadcast."""
    defaults = {"spt": 0, "dpt": 0, "duration": 0, "out": 0, "in": 0, "label": LABEL[label]}
    rows = {}
    for field in ROW_FIELDS:
        value = columns.get(field, defaults.get(field))
        if value is None:
            raise KeyError(f"column {field!r} is required")
        rows[field] = np.broadcast_to(np.asarray(value), (n,)).copy()
    return rows


def concat_rows(batches: list[Rows]) -> Rows:
    return {field: np.concatenate([b[field] for b in batches]) for field in ROW_FIELDS}


def lognormal_bytes(rng: np.random.Generator, median: np.ndarray, sigma: float, n: int) -> np.ndarray:
    return np.where(median > 0, np.rint(median * rng.lognormal(0.0, sigma, n)), 0).astype(np.int64)


def ephemeral_ports(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(1024, 65536, n)


def diurnal_times(rng: np.random.Generator, n: int, span: int) -> np.ndarray:
    """Session start times with a working-day profile (quiet nights, busy afternoons)."""
    bins = max(1, span // 900)
    edges = np.linspace(0, span, bins + 1)
    hours = ((edges[:-1] + edges[1:]) / 2 / 3600) % 24
    weights = 0.25 + np.exp(-(((hours - 14.0) / 4.5) ** 2))
    per_bin = rng.multinomial(n, weights / weights.sum())
    starts = np.repeat(edges[:-1], per_bin)
    return starts + rng.random(n) * (edges[1] - edges[0])


# ---------------------------------------------------------------- normal traffic


def day_app_mix(rng: np.random.Generator, spread: float) -> np.ndarray:
    """The day's app probabilities: the long-tailed base mix, perturbed per day."""
    base = np.array([APP_PROFILES[name].weight for name in APP_VOCABULARY])
    mix = base * rng.lognormal(0.0, spread, len(base))
    return mix / mix.sum()


def pick_peers(rng: np.random.Generator, net: Network, peer: str, clients: np.ndarray) -> np.ndarray:
    n = len(clients)
    if peer == "ext":
        return rng.choice(net.external, n, p=net.external_weights)
    if peer == "host":
        return rng.choice(net.hosts, n, p=net.host_weights)
    if peer == "bcast":
        return (clients & ~0xFF) | 0xFF
    fixed = {"ssdp": SSDP_GROUP, "igmp": IGMP_GROUP, "allbcast": LIMITED_BROADCAST}
    if peer in fixed:
        return np.full(n, fixed[peer], dtype=np.int64)
    return rng.choice(net.servers[peer], n)


def normal_sessions(
    rng: np.random.Generator, net: Network, n: int, span: int, mix: np.ndarray, failed_share: float
) -> Rows:
    """Client sessions in short bursts (a page load opens several connections at once)."""
    burst_sizes = rng.geometric(0.45, n)
    n_bursts = int(np.searchsorted(np.cumsum(burst_sizes), n)) + 1
    burst_of = np.repeat(np.arange(n_bursts), burst_sizes[:n_bursts])[:n]
    offsets = rng.exponential(0.6, n)
    burst_start = diurnal_times(rng, n_bursts, span)
    t = np.minimum(burst_start[burst_of] + offsets, span - 1e-3)
    app = rng.choice(len(mix), n_bursts, p=mix)[burst_of]
    src = rng.choice(net.hosts, n_bursts, p=net.host_weights)[burst_of]
    dst = np.empty(n, dtype=np.int64)
    rows = make_rows(n, t=t, src=src, dst=dst, spt=ephemeral_ports(rng, n), proto=0, app=app)
    for code, name in enumerate(APP_VOCABULARY):
        mask = app == code
        if mask.any():
            _fill_app_sessions(rng, net, APP_PROFILES[name], rows, mask)
    _invert_inbound(rng, net, rows)
    _fail_sessions(rng, rows, failed_share)
    return rows


def _fill_app_sessions(
    rng: np.random.Generator, net: Network, profile: AppProfile, rows: Rows, mask: np.ndarray
) -> None:
    k = int(mask.sum())
    rows["proto"][mask] = profile.proto
    rows["dst"][mask] = pick_peers(rng, net, profile.peer, rows["src"][mask])
    rows["dpt"][mask] = profile.dpt if profile.dpt >= 0 else rng.integers(1024, 65536, k)
    if profile.spt >= 0:
        rows["spt"][mask] = profile.spt
    rows["out"][mask] = lognormal_bytes(rng, profile.out_median, 1.2, k)
    rows["in"][mask] = lognormal_bytes(rng, profile.in_median, 1.6, k)
    rows["duration"][mask] = np.floor(profile.duration_median * rng.lognormal(0, 1.3, k))


def _invert_inbound(rng: np.random.Generator, net: Network, rows: Rows) -> None:
    """Outside clients reach the site's web, mail and ssh servers (about 12% of those sessions)."""
    targets = {"https": "web", "http": "web", "smtp": "mail", "ssh": "host"}
    for name, role in targets.items():
        mask = (rows["app"] == APP[name]) & (rng.random(len(rows["app"])) < 0.12)
        k = int(mask.sum())
        rows["src"][mask] = rng.choice(net.external, k, p=net.external_weights)
        rows["dst"][mask] = pick_peers(rng, net, role, rows["src"][mask])


def _fail_sessions(rng: np.random.Generator, rows: Rows, share: float) -> None:
    """Refused or timed-out TCP attempts: a SYN and maybe a reset, like a probe."""
    mask = (rows["proto"] == TCP) & (rng.random(len(rows["proto"])) < share)
    k = int(mask.sum())
    rows["out"][mask] = rng.choice([0, 44, 60], k)
    rows["in"][mask] = rng.choice([0, 0, 40], k)
    rows["duration"][mask] = 0


def monitoring_rounds(rng: np.random.Generator, net: Network, n: int, span: int) -> Rows:
    """Monitoring hosts ping and poll a fixed list of servers in rounds: a benign IP sweep.

    The targets are scattered over the site's subnets, not consecutive hosts of one /24.
    """
    batches = []
    monitors = net.servers["monitor"]
    for index, monitor in enumerate(monitors):
        quota = n // len(monitors) + (index < n % len(monitors))
        targets = rng.choice(net.hosts, min(len(net.hosts), int(rng.integers(20, 250))), replace=False)
        rounds = -(-quota // len(targets))
        starts = np.sort(rng.uniform(0, span - 60, rounds))
        gaps = rng.uniform(0.005, 0.3, (rounds, len(targets)))
        t = (starts[:, None] + np.cumsum(gaps, axis=1)).ravel()[:quota]
        dst = np.tile(rng.permutation(targets), rounds)[:quota]
        alive = rng.random(quota) > 0.1
        if index % 2 == 0:  # pings
            payload = int(rng.choice(PING_PAYLOADS))
            kind = {"proto": ICMP, "app": APP["icmp"], "out": payload, "in": payload * alive}
        else:  # SNMP polls
            kind = {"proto": UDP, "app": APP["snmp"], "out": 90, "in": 310 * alive, "dpt": 161}
            kind["spt"] = ephemeral_ports(rng, quota)
        batch = make_rows(quota, t=t, src=monitor, dst=dst, **kind)
        batches.append(batch)
    return concat_rows(batches)


def connectivity_checks(rng: np.random.Generator, net: Network, n: int, span: int) -> Rows:
    """Hosts across the site ping a few outside targets on one schedule; the targets drop ICMP.

    Many sources, one destination, no reply: in the 17 features this looks like a smurf flood.
    """
    targets = rng.choice(net.external, 3, replace=False)

    def episode(size: int, start: float) -> Rows:
        payload = int(rng.choice(PING_PAYLOADS))
        return make_rows(
            size,
            t=start + rng.uniform(0, 3.0, size),
            src=rng.choice(net.hosts, size),
            dst=int(rng.choice(targets)),
            proto=ICMP,
            app=APP["icmp"],
            out=payload,
        )

    return run_episodes(rng, n, span, lambda: int(rng.integers(10, 150)), episode)


def multiport_sessions(rng: np.random.Generator, net: Network, n: int, span: int) -> Rows:
    """Passive-FTP and RPC clients opening many high ports on one server: a benign port sweep."""

    def episode(size: int, start: float) -> Rows:
        client = rng.choice(net.hosts, p=net.host_weights)
        server = rng.choice(np.concatenate([net.servers["file"], net.external[:50]]))
        t = start + np.cumsum(rng.exponential(rng.uniform(0.05, 2.0), size))
        rows = make_rows(
            size,
            t=t,
            src=client,
            dst=server,
            spt=ephemeral_ports(rng, size),
            dpt=rng.integers(1024, 65536, size),
            proto=TCP,
            app=APP["others"],
            out=lognormal_bytes(rng, 300.0, 1.5, size),
            duration=rng.integers(0, 5, size),
            **{"in": lognormal_bytes(rng, 5_000.0, 2.0, size)},
        )
        if rng.random() < 0.5:  # the server refuses: only a SYN and a reset per port
            _fail_sessions(rng, rows, 1.0)
        return rows

    return run_episodes(rng, n, span, lambda: int(rng.integers(5, 60)), episode)


# ---------------------------------------------------------------- attacks


@dataclass(frozen=True)
class AttackContext:
    """Who attacks whom on a day: test days draw other attackers, victims and rates."""

    attackers: np.ndarray
    victims: np.ndarray
    target_subnets: np.ndarray
    slow_share: float
    rate_shift: float  # multiplies attack rates on this day


def attack_context(rng: np.random.Generator, net: Network, split: str, slow_share: float) -> AttackContext:
    half = 0 if split == "train" else 1
    subnets = net.subnets[half::2] if len(net.subnets) > 1 else net.subnets
    in_half = np.isin(net.hosts & ~0xFF, subnets)
    return AttackContext(
        attackers=draw_public_ips(rng, 40),
        victims=rng.choice(net.hosts[in_half], min(20, int(in_half.sum())), replace=False),
        target_subnets=subnets,
        slow_share=slow_share,
        rate_shift=float(rng.lognormal(0.0, 0.5)),
    )


def run_episodes(
    rng: np.random.Generator,
    n: int,
    span: int,
    draw_size: Callable[[], int],
    episode: Callable[[int, float], Rows],
) -> Rows:
    """Episodes at random starts until n rows exist; the last one is cut short."""
    batches, produced = [make_rows(0, t=0.0, src=0, dst=0, proto=0, app=0)], 0
    while produced < n:
        size = min(draw_size(), n - produced)
        batch = episode(size, float(rng.uniform(0, span)))
        batches.append(batch)
        produced += size
    rows = concat_rows(batches)
    rows["t"] = np.minimum(rows["t"], span - 1e-3)
    return rows


def probe_gaps(
    rng: np.random.Generator, ctx: AttackContext, size: int, fast: tuple[float, float]
) -> np.ndarray:
    """Gaps between probes: fast bursts, or slow probes that stay under the 2 s window."""
    if rng.random() < ctx.slow_share:
        return rng.uniform(2.0, 40.0) * rng.uniform(0.7, 1.3, size)
    rate = np.exp(rng.uniform(np.log(fast[0]), np.log(fast[1]))) * ctx.rate_shift
    return rng.exponential(1.0 / rate, size)


def pick_attacker(rng: np.random.Generator, net: Network, ctx: AttackContext, inside_share: float) -> int:
    pool = net.hosts if rng.random() < inside_share else ctx.attackers
    return int(rng.choice(pool))


def log_uniform_size(rng: np.random.Generator, low: int, high: int) -> Callable[[], int]:
    return lambda: int(np.exp(rng.uniform(np.log(low), np.log(high))))


def ip_sweeps(rng: np.random.Generator, net: Network, ctx: AttackContext, n: int, span: int) -> Rows:
    """One source pinging (or SYN-probing) consecutive hosts of one or more /24s."""

    def episode(size: int, start: float) -> Rows:
        first = int(rng.choice(ctx.target_subnets)) + int(rng.choice([1, 1, 1, rng.integers(1, 200)]))
        host_index = (first & 0xFF) - 1 + np.arange(size)
        dst = (first & ~0xFF) + 256 * (host_index // 254) + host_index % 254 + 1
        alive = np.isin(dst, net.hosts)
        t = start + np.cumsum(probe_gaps(rng, ctx, size, (5, 300)))
        src = pick_attacker(rng, net, ctx, 0.25)
        if rng.random() < 0.8:  # ICMP echo
            payload = int(rng.choice(PING_PAYLOADS[:4]))
            kind = {"proto": ICMP, "app": APP["icmp"], "out": payload, "in": payload * alive}
        else:  # TCP SYN to a web port
            port = int(rng.choice([80, 443]))
            kind = {
                "proto": TCP,
                "app": APP["http"] if port == 80 else APP["https"],
                "out": 44,
                "in": 40 * alive,
            }
            kind |= {"spt": ephemeral_ports(rng, size), "dpt": port}
        return make_rows(size, label="Probing-IP sweep", t=t, src=src, dst=dst, **kind)

    return run_episodes(rng, n, span, log_uniform_size(rng, 20, 1500), episode)


def port_app_codes(ports: np.ndarray) -> np.ndarray:
    lookup = np.full(65536, APP["others"])
    for port, code in PORT_TO_APP.items():
        lookup[port] = code
    return lookup[ports]


def port_sweeps(rng: np.random.Generator, net: Network, ctx: AttackContext, n: int, span: int) -> Rows:
    """One source hitting many ports of one host with tiny or empty packets."""

    def episode(size: int, start: float) -> Rows:
        if rng.random() < 0.6:
            first = int(rng.choice([1, 1, rng.integers(1, 60000)]))
            ports = (first - 1 + np.arange(size)) % 65535 + 1
        else:
            ports = rng.choice(65535, size, replace=False) + 1
        udp = rng.random() < 0.1
        open_port = np.isin(ports, SERVICE_PORTS) & (rng.random(size) < 0.5)
        spt = int(rng.integers(1024, 65536)) if rng.random() < 0.7 else ephemeral_ports(rng, size)
        return make_rows(
            size,
            label="Probing-Port sweep",
            t=start + np.cumsum(probe_gaps(rng, ctx, size, (10, 1000))),
            src=pick_attacker(rng, net, ctx, 0.3),
            dst=int(rng.choice(ctx.victims)),
            spt=spt,
            dpt=ports,
            proto=UDP if udp else TCP,
            app=port_app_codes(ports),
            out=rng.choice([0, 40, 44, 60], size),
            **{"in": np.where(open_port, 60, rng.choice([0, 40], size))},
        )

    return run_episodes(rng, n, span, log_uniform_size(rng, 10, 2000), episode)


def nmap_scans(rng: np.random.Generator, net: Network, ctx: AttackContext, n: int, span: int) -> Rows:
    """One source probing several hosts times the top ports, mixing ICMP, TCP and UDP."""

    def episode(size: int, start: float) -> Rows:
        subnet = int(rng.choice(ctx.target_subnets))
        ports = rng.permutation(SERVICE_PORTS)
        n_targets = min(254, max(int(rng.integers(2, 12)), -(-size // (len(ports) + 1))))
        targets = subnet + rng.choice(np.arange(1, 255), n_targets, replace=False)
        host = np.repeat(targets, len(ports) + 1)[:size]
        step = np.tile(np.arange(len(ports) + 1), len(targets))[:size]
        dpt = np.where(step == 0, 0, ports[np.maximum(step - 1, 0)])
        proto = np.where(step == 0, ICMP, np.where(rng.random(size) < 0.2, UDP, TCP))
        return make_rows(
            size,
            label="Probing-Nmap",
            t=start + np.cumsum(probe_gaps(rng, ctx, size, (50, 2000))),
            src=pick_attacker(rng, net, ctx, 0.2),
            dst=host,
            spt=np.where(proto == ICMP, 0, int(rng.integers(30000, 65536))),
            dpt=dpt,
            proto=proto,
            app=np.where(proto == ICMP, APP["icmp"], port_app_codes(dpt)),
            out=np.where(proto == ICMP, 28, rng.choice([0, 40, 44], size)),
            **{"in": rng.choice([0, 0, 40], size)},
        )

    return run_episodes(rng, n, span, log_uniform_size(rng, 10, 300), episode)


def smurf_attacks(rng: np.random.Generator, net: Network, ctx: AttackContext, n: int, span: int) -> Rows:
    """Echo requests to a /24's broadcast address, spoofed from the victim; every host replies to it."""

    def episode(size: int, start: float) -> Rows:
        subnet = int(rng.choice(net.subnets))
        members = net.hosts[(net.hosts & ~0xFF) == subnet]
        reflectors = rng.choice(members, min(len(members), int(rng.integers(10, 120))), replace=False)
        victim = int(rng.choice(ctx.victims)) if rng.random() < 0.7 else int(rng.choice(ctx.attackers))
        per_request = 1 + len(reflectors)
        requests = -(-size // per_request)
        request_t = start + np.cumsum(probe_gaps(rng, ctx, requests, (1, 50)))
        is_request = np.tile(np.arange(per_request) == 0, requests)[:size]
        t = np.repeat(request_t, per_request)[:size] + np.where(is_request, 0, rng.uniform(0, 0.5, size))
        src = np.where(is_request, victim, np.tile(np.concatenate(([victim], reflectors)), requests)[:size])
        dst = np.where(is_request, subnet | 0xFF, victim)
        payload = int(rng.choice(PING_PAYLOADS[2:]))
        return make_rows(
            size, label="DDOS-smurf", t=t, src=src, dst=dst, proto=ICMP, app=APP["icmp"], out=payload
        )

    return run_episodes(rng, n, span, log_uniform_size(rng, 20, 600), episode)


ATTACK_GENERATORS = {
    "DDOS-smurf": smurf_attacks,
    "Probing-IP sweep": ip_sweeps,
    "Probing-Nmap": nmap_scans,
    "Probing-Port sweep": port_sweeps,
}


def apply_label_noise(rng: np.random.Generator, labels: np.ndarray, rate: float) -> np.ndarray:
    """The labeller misses a share of attack rows (-> Normal) and calls some Nmap rows port sweeps."""
    noisy = labels.copy()
    attacks = np.flatnonzero(labels != LABEL[NORMAL])
    missed = rng.choice(attacks, round(rate * len(attacks)), replace=False)
    noisy[missed] = LABEL[NORMAL]
    nmap = np.setdiff1d(np.flatnonzero(labels == LABEL["Probing-Nmap"]), missed)
    confused = rng.choice(nmap, min(len(nmap), round(rate * len(nmap))), replace=False)
    noisy[confused] = LABEL["Probing-Port sweep"]
    return noisy
