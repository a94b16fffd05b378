"""The traffic-context feature set: what each feature reads, declared as data.

The paper drops `time, src, dst, spt, dpt`; these features keep what they say. A row feature
reads one row (`dst_broadcast`: the destination ends in .0 or .255). A window feature counts the
distinct `value`s among the rows that share a row's `key` in the row's bucket: `seconds` wide,
aligned to the clock (a 60 s bucket is one clock minute), over the whole file, rows before and
after the row alike. `tasks/model/context.py` computes them; a dataset that declares no
`ContextSpec` has none.
"""

from dataclasses import dataclass
from typing import Final

# `paper`: the paper's features only; `context`: those and the dataset's `ContextSpec` features.
FEATURE_SETS: Final[tuple[str, ...]] = ("paper", "context")
AUTO_FEATURE_SET: Final[str] = "auto"  # `context` where the dataset declares it, else `paper`

# Count tables are kept per clock hour; every bucket lies inside one.
PARTITION_SECONDS: Final[int] = 3600

ROW_FEATURES: Final[tuple[str, ...]] = ("dst_broadcast", "dst_in_src_24", "zero_ports")
KEYS: Final[tuple[str, ...]] = (
    "src",
    "dst",
    "src_dst",
    "src_dst24",
)  # src_dst24: the source and the destination's /24
VALUES: Final[tuple[str, ...]] = ("src", "src24", "dst", "dst24", "dpt")


@dataclass(frozen=True)
class WindowCount:
    """Distinct `value`s among the rows sharing a row's `key` within its clock bucket of `seconds`."""

    key: str
    value: str
    seconds: int

    def __post_init__(self) -> None:
        if self.key not in KEYS or self.value not in VALUES:
            raise ValueError(f"a window counts a value of {VALUES} per key of {KEYS}, not {self}")
        if self.seconds <= 0 or PARTITION_SECONDS % self.seconds:
            raise ValueError(f"window of {self.seconds} s: it must divide {PARTITION_SECONDS} s")

    @property
    def name(self) -> str:
        return f"{self.value}_per_{self.key}_{self.seconds}s"


@dataclass(frozen=True)
class ContextSpec:
    """A context feature set and the identifier columns it reads."""

    rows: tuple[str, ...]
    windows: tuple[WindowCount, ...]
    time: str = "time"
    src: str = "src"
    dst: str = "dst"
    spt: str = "spt"
    dpt: str = "dpt"

    def __post_init__(self) -> None:
        unknown = set(self.rows) - set(ROW_FEATURES)
        if unknown:
            raise ValueError(f"unknown row features {sorted(unknown)}; known: {ROW_FEATURES}")
        if len(set(self.windows)) != len(self.windows):
            raise ValueError("a window is declared twice")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return (*self.rows, *(window.name for window in self.windows))

    @property
    def columns(self) -> tuple[str, ...]:
        """The raw columns the features read."""
        return (self.time, self.src, self.dst, self.spt, self.dpt)


def windows(keys_values: tuple[tuple[str, str], ...], seconds: tuple[int, ...]) -> tuple[WindowCount, ...]:
    """Every (key, value) count at every width."""
    return tuple(WindowCount(key, value, width) for width in seconds for key, value in keys_values)


ZYELL_CONTEXT: Final[ContextSpec] = ContextSpec(
    rows=ROW_FEATURES,
    windows=windows(
        (
            ("src", "dst"),  # an IP sweep touches many hosts
            ("src", "dst24"),  # ... of few /24s; monitoring rounds touch many /24s
            ("src", "dpt"),  # a port sweep or nmap touches many ports
            ("src_dst", "dpt"),  # ... of one host
            ("src_dst24", "dst"),  # hosts of one /24: a sweep walks a subnet
            ("dst", "src"),  # a smurf victim hears from many reflectors
            ("dst", "src24"),  # ... all of one /24; connectivity checks come from many
        ),
        (60, 3600),
    ),
)
