"""The ZYELL-NCTU NetTraffic-1.0 firewall-day format: the single source of columns and vocabularies."""

from typing import Final

import pandera.pandas as pa

from schemas.checks import bounded_text

CLASS_NAMES: Final[tuple[str, ...]] = (
    "Normal",
    "DDOS-smurf",
    "Probing-IP sweep",
    "Probing-Nmap",
    "Probing-Port sweep",
)
NORMAL: Final[str] = "Normal"
DDOS: Final[str] = "DDOS-smurf"
ATTACK_NAMES: Final[tuple[str, ...]] = CLASS_NAMES[1:]

COUNTER_COLUMNS: Final[tuple[str, ...]] = (
    "cnt_dst",
    "cnt_src",
    "cnt_serv_src",
    "cnt_serv_dst",
    "cnt_dst_slow",
    "cnt_src_slow",
    "cnt_serv_src_slow",
    "cnt_serv_dst_slow",
    "cnt_dst_conn",
    "cnt_src_conn",
    "cnt_serv_src_conn",
    "cnt_serv_dst_conn",
)
ID_COLUMNS: Final[tuple[str, ...]] = ("time", "src", "dst", "spt", "dpt")
FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "duration",
    "out (bytes)",
    "in (bytes)",
    "proto",
    "app",
    *COUNTER_COLUMNS,
)
LABEL_COLUMN: Final[str] = "label"
UNLABELLED_COLUMNS: Final[tuple[str, ...]] = (*ID_COLUMNS, *FEATURE_COLUMNS)
COLUMNS: Final[tuple[str, ...]] = (*UNLABELLED_COLUMNS, LABEL_COLUMN)

TIME_FORMAT: Final[str] = "%Y-%m-%d %H:%M:%S"

# Ordered by how often ZYELL logs show them; encoding maps unknown names to "others".
APP_VOCABULARY: Final[tuple[str, ...]] = (
    "others",
    "domain",
    "https",
    "snmp",
    "icmp",
    "http",
    "microsoft-ds",
    "ssdp",
    "netbios-ssn",
    "netbios-dgm",
    "ssh",
    "netbios-ns",
    "ftp",
    "syslog",
    "igmp",
    "h323",
    "real-audio",
    "pop3",
    "telnet",
    "smtp",
    "rtsp",
    "pptp",
    "auth",
    "roadrunner",
    "bgp",
    "isakmp",
    "rexec",
    "rcmd",
    "finger",
    "bootps",
    "sql-net",
    "vdolive",
    "irc",
    "nntp",
    "aim",
    "rlogin",
    "msn",
    "news",
    "bootpc",
    "snmp-trap",
    "tftp",
    "nfs",
    "tacacs",
    "icq",
    "sftp",
)
UNKNOWN_APP: Final[str] = "others"

# ---------------------------------------------------------------- the raw-day contract

SCHEMA_VERSION: Final[str] = "zyell-1"
IPV4_PATTERN: Final[str] = (
    r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
)
STRING_COLUMNS: Final[tuple[str, ...]] = ("src", "dst", "app", LABEL_COLUMN)
FLOAT_COLUMNS: Final[tuple[str, ...]] = ("duration",)
INTEGER_COLUMNS: Final[tuple[str, ...]] = (
    "spt",
    "dpt",
    "out (bytes)",
    "in (bytes)",
    "proto",
    *COUNTER_COLUMNS,
)
PORT_RANGE: Final[tuple[int, int]] = (0, 65535)
PROTO_RANGE: Final[tuple[int, int]] = (0, 255)
# Sanity bounds, far above any real session (a year; a petabyte): they catch inf, 1e308 and overflow.
MAX_DURATION_S: Final[float] = 365 * 86_400.0
MAX_BYTES: Final[int] = 10**15


def at_most(limit: float, unit: str = "") -> pa.Check:
    """Finite and not above `limit` (NaN and inf fail)."""
    return pa.Check.le(limit, error=f"not finite or above the maximum of {limit:,.0f}{unit}")


def raw_day_schema(labelled: bool) -> pa.DataFrameSchema:
    """The checks every row of a firewall day must pass, on parsed values.

    Parsing is typed (see `tasks.ingest.parse`): a `time` that does not parse with TIME_FORMAT, or a
    number that does not parse, arrives here as null and fails `not_nullable`.
    """
    non_negative = [pa.Check.ge(0)]
    columns = {
        "time": pa.Column("datetime64[s]", nullable=False),
        "src": pa.Column(str, pa.Check.str_matches(IPV4_PATTERN), nullable=False),
        "dst": pa.Column(str, pa.Check.str_matches(IPV4_PATTERN), nullable=False),
        "spt": pa.Column("Int64", pa.Check.in_range(*PORT_RANGE), nullable=False),
        "dpt": pa.Column("Int64", pa.Check.in_range(*PORT_RANGE), nullable=False),
        "duration": pa.Column("Float64", [*non_negative, at_most(MAX_DURATION_S, " s")], nullable=False),
        "out (bytes)": pa.Column("Int64", [*non_negative, at_most(MAX_BYTES)], nullable=False),
        "in (bytes)": pa.Column("Int64", [*non_negative, at_most(MAX_BYTES)], nullable=False),
        "proto": pa.Column("Int64", pa.Check.in_range(*PROTO_RANGE), nullable=False),
        # An unknown app is a real-world event, not a bad row: it is kept and counted (if not too long).
        "app": pa.Column(str, bounded_text(pa.Check.str_length(min_value=1)), nullable=False),
        **{name: pa.Column("Int64", non_negative, nullable=False) for name in COUNTER_COLUMNS},
    }
    if labelled:
        columns[LABEL_COLUMN] = pa.Column(
            str, pa.Check.isin(CLASS_NAMES, error="not one of the five class names"), nullable=False
        )
    return pa.DataFrameSchema(columns, ordered=True, strict=True, name="firewall-day")
