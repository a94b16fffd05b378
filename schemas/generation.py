"""Configuration of the synthetic ZYELL-format traffic generator: presets and day plans."""

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.firewall import ATTACK_NAMES, DDOS

PresetName = Literal["tiny", "demo", "full"]
Split = Literal["train", "test"]


class DayPlan(BaseModel):
    """What one generated day holds: its date, total rows and attack rows per class."""

    model_config = ConfigDict(frozen=True)

    date: date
    split: Split
    rows: int = Field(gt=0)
    attacks: dict[str, int]

    @model_validator(mode="after")
    def _attacks_fit(self) -> "DayPlan":
        unknown = set(self.attacks) - set(ATTACK_NAMES)
        if unknown:
            raise ValueError(f"unknown attack classes {sorted(unknown)}")
        if any(count < 0 for count in self.attacks.values()):
            raise ValueError("attack counts must be non-negative")
        if sum(self.attacks.values()) >= self.rows:
            raise ValueError(f"{self.file_name}: attacks leave no Normal rows")
        return self

    @property
    def file_name(self) -> str:
        return f"{self.date:%m%d}_firewall.csv"

    @property
    def normal_rows(self) -> int:
        return self.rows - sum(self.attacks.values())


class TrafficConfig(BaseModel):
    """Knobs of the traffic model; the defaults are the calibrated ones (see README)."""

    model_config = ConfigDict(frozen=True)

    label_noise: float = Field(default=0.01, ge=0, lt=0.5)
    monitoring_share: float = Field(default=0.012, ge=0, lt=0.5)
    multiport_share: float = Field(default=0.006, ge=0, lt=0.5)
    checks_share: float = Field(default=0.004, ge=0, lt=0.5)
    slow_attack_share: float = Field(default=0.2, ge=0, le=1)
    test_slow_attack_share: float = Field(default=0.4, ge=0, le=1)
    failed_session_share: float = Field(default=0.04, ge=0, lt=1)


class Preset(BaseModel):
    """A named data set: the plan of every day and the scale of the simulated network."""

    model_config = ConfigDict(frozen=True)

    name: PresetName
    days: tuple[DayPlan, ...]
    span_seconds: int = Field(gt=0, le=86_400)
    network_scale: float = Field(gt=0)
    traffic: TrafficConfig = TrafficConfig()

    @property
    def total_rows(self) -> int:
        return sum(day.rows for day in self.days)


IP, PORT, NMAP = "Probing-IP sweep", "Probing-Port sweep", "Probing-Nmap"

# Row counts of the real ZYELL-NCTU days; attack counts follow the published class totals
# (IP 240,524; port 77,289; DDoS 2,345; Nmap 829) and their day-to-day mix.
FULL_DAYS: tuple[tuple[str, Split, int, dict[str, int]], ...] = (
    ("2020-12-03", "train", 3_265_630, {IP: 183_000, PORT: 65_300, DDOS: 0, NMAP: 0}),
    ("2020-12-10", "train", 2_809_865, {IP: 50_600, PORT: 5_600, DDOS: 45, NMAP: 29}),
    ("2020-12-16", "train", 3_165_968, {IP: 6_924, PORT: 6_389, DDOS: 2_300, NMAP: 800}),
    ("2021-01-23", "test", 3_601_186, {IP: 54_000, PORT: 18_000, DDOS: 700, NMAP: 180}),
    ("2021-01-24", "test", 2_050_710, {IP: 61_500, PORT: 2_050, DDOS: 150, NMAP: 60}),
    ("2021-01-25", "test", 2_120_819, {IP: 8_500, PORT: 25_400, DDOS: 1_200, NMAP: 300}),
    ("2021-01-26", "test", 5_517_815, {IP: 193_000, PORT: 16_500, DDOS: 400, NMAP: 120}),
)
SCALED = {"demo": 40, "tiny": 2_000}
# Smaller presets keep every class on every day, so every split can hold all five.
MIN_ATTACK_ROWS = {
    "demo": {IP: 40, PORT: 30, DDOS: 15, NMAP: 12},
    "tiny": {IP: 40, PORT: 30, DDOS: 12, NMAP: 12},
}
SPAN_SECONDS = {"full": 86_400, "demo": 86_400, "tiny": 7_200}


def _scaled_day(raw: tuple[str, Split, int, dict[str, int]], name: PresetName) -> DayPlan:
    day, split, rows, attacks = raw
    divisor = SCALED.get(name, 1)
    floors = MIN_ATTACK_ROWS.get(name, {})
    return DayPlan(
        date=date.fromisoformat(day),
        split=split,
        rows=round(rows / divisor),
        attacks={cls: max(round(count / divisor), floors.get(cls, 0)) for cls, count in attacks.items()},
    )


def get_preset(name: PresetName, traffic: TrafficConfig | None = None) -> Preset:
    """The plan of the `tiny`, `demo` or `full` data set."""
    return Preset(
        name=name,
        days=tuple(_scaled_day(raw, name) for raw in FULL_DAYS),
        span_seconds=SPAN_SECONDS[name],
        network_scale=1 / SCALED.get(name, 1),
        traffic=traffic or TrafficConfig(),
    )
