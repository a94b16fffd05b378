"""The NSL-KDD text format: 41 features, the attack label and a difficulty score, no header.

Only five of its labels are in scope (see LABEL_MAP); the other attack labels that NSL-KDD is
known to carry are valid rows that are set aside, and any other label is a bad row.
"""

from typing import Final

import pandera.pandas as pa

from schemas.checks import bounded_text

PROTOCOLS: Final[tuple[str, ...]] = ("tcp", "udp", "icmp")
# The 70 services of the NSL-KDD train and test files, most frequent first.
SERVICES: Final[tuple[str, ...]] = (
    "other", "http", "private", "domain_u", "smtp", "ftp_data", "eco_i", "telnet", "ecr_i", "finger",
    "ftp", "auth", "Z39_50", "courier", "uucp", "time", "bgp", "whois", "imap4", "uucp_path",
    "iso_tsap", "ctf", "urp_i", "nnsp", "supdup", "http_443", "csnet_ns", "efs", "gopher", "domain",
    "vmnet", "daytime", "discard", "hostnames", "name", "klogin", "exec", "mtp", "ldap", "systat",
    "netbios_dgm", "link", "login", "netstat", "netbios_ns", "sunrpc", "netbios_ssn", "kshell", "echo",
    "nntp", "ssh", "pop_3", "sql_net", "IRC", "ntp_u", "X11", "rje", "remote_job", "pop_2", "printer",
    "shell", "urh_i", "red_i", "pm_dump", "tim_i", "http_8001", "aol", "harvest", "http_2784", "tftp_u",
)  # fmt: skip
FLAGS: Final[tuple[str, ...]] = ("SF", "S0", "REJ", "RSTR", "RSTO", "S1", "SH", "S2", "RSTOS0", "S3", "OTH")
UNKNOWN_SERVICE: Final[str] = "other"

CATEGORICAL: Final[dict[str, tuple[str, ...]]] = {
    "protocol_type": PROTOCOLS,
    "service": SERVICES,
    "flag": FLAGS,
}
FLAG_COLUMNS: Final[tuple[str, ...]] = ("land", "logged_in", "root_shell", "is_host_login", "is_guest_login")
COUNT_COLUMNS: Final[tuple[str, ...]] = (
    "duration", "src_bytes", "dst_bytes", "wrong_fragment", "urgent", "hot", "num_failed_logins",
    "num_compromised", "su_attempted", "num_root", "num_file_creations", "num_shells",
    "num_access_files", "num_outbound_cmds",
)  # fmt: skip
WINDOW_COUNTS: Final[dict[str, int]] = {  # the traffic counters and their caps
    "count": 511,
    "srv_count": 511,
    "dst_host_count": 255,
    "dst_host_srv_count": 255,
}
# log1p before the scaler (README "Feature transforms": chosen by benchmarks/heavy_tails.py)
HEAVY_TAILED_COLUMNS: Final[tuple[str, ...]] = ("duration", "src_bytes", "dst_bytes", *WINDOW_COUNTS)
RATE_COLUMNS: Final[tuple[str, ...]] = (
    "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate", "same_srv_rate",
    "diff_srv_rate", "srv_diff_host_rate", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
)  # fmt: skip
FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land", "wrong_fragment",
    "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised", "root_shell", "su_attempted",
    "num_root", "num_file_creations", "num_shells", "num_access_files", "num_outbound_cmds",
    "is_host_login", "is_guest_login", "count", "srv_count", "serror_rate", "srv_serror_rate",
    "rerror_rate", "srv_rerror_rate", "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate",
    "dst_host_count", "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
)  # fmt: skip
LABEL_COLUMN: Final[str] = "label"
DIFFICULTY_COLUMN: Final[str] = "difficulty"
COLUMNS: Final[tuple[str, ...]] = (*FEATURE_COLUMNS, LABEL_COLUMN, DIFFICULTY_COLUMN)

LABEL_MAP: Final[dict[str, str]] = {
    "normal": "Normal",
    "smurf": "DDOS-smurf",
    "ipsweep": "Probing-IP sweep",
    "nmap": "Probing-Nmap",
    "portsweep": "Probing-Port sweep",
}
# Every other attack of the NSL-KDD train and test files.
OUT_OF_SCOPE_LABELS: Final[frozenset[str]] = frozenset((
    "back", "land", "neptune", "pod", "teardrop", "apache2", "mailbomb", "processtable", "udpstorm",
    "satan", "mscan", "saint", "ftp_write", "guess_passwd", "imap", "multihop", "phf", "spy",
    "warezclient", "warezmaster", "sendmail", "named", "snmpgetattack", "snmpguess", "xlock", "xsnoop",
    "worm", "buffer_overflow", "loadmodule", "perl", "rootkit", "httptunnel", "ps", "sqlattack", "xterm",
))  # fmt: skip
SCHEMA_VERSION: Final[str] = "nsl-kdd-1"
DIFFICULTY_RANGE: Final[tuple[int, int]] = (0, 21)


def raw_schema(labelled: bool) -> pa.DataFrameSchema:
    """The checks every NSL-KDD row must pass, on parsed values (a number that does not parse
    arrives as null). Unknown categories are kept, like ZYELL's unknown apps, and encoded as
    their column's unknown code."""
    non_negative = [pa.Check.ge(0)]
    columns = {}
    for name in FEATURE_COLUMNS:
        if name in CATEGORICAL:
            columns[name] = pa.Column(str, bounded_text(pa.Check.str_length(min_value=1)), nullable=False)
        elif name in RATE_COLUMNS:
            columns[name] = pa.Column("Float64", pa.Check.in_range(0.0, 1.0), nullable=False)
        elif name in FLAG_COLUMNS:
            columns[name] = pa.Column("Int64", pa.Check.isin([0, 1]), nullable=False)
        elif name in WINDOW_COUNTS:
            columns[name] = pa.Column("Int64", pa.Check.in_range(0, WINDOW_COUNTS[name]), nullable=False)
        else:
            columns[name] = pa.Column("Int64", non_negative, nullable=False)
    if labelled:
        known = sorted({*LABEL_MAP, *OUT_OF_SCOPE_LABELS})
        columns[LABEL_COLUMN] = pa.Column(
            str, pa.Check.isin(known, error="not a known NSL-KDD label"), nullable=False
        )
        columns[DIFFICULTY_COLUMN] = pa.Column("Int64", pa.Check.in_range(*DIFFICULTY_RANGE), nullable=False)
    return pa.DataFrameSchema(columns, ordered=True, strict=True, name="nsl-kdd")
