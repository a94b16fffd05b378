"""The ZYELL-NCTU NetTraffic-1.0 firewall-day format: the single source of columns and vocabularies."""

from typing import Final

CLASS_NAMES: Final[tuple[str, ...]] = (
    "Normal",
    "DDOS-smurf",
    "Probing-IP sweep",
    "Probing-Nmap",
    "Probing-Port sweep",
)
NORMAL: Final[str] = "Normal"
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
