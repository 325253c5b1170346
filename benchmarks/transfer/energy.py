"""Device energy of an upload under a stated model: radio state powers x time, plus CPU for encoding.

Radio (Huang et al., "A close examination of performance and power characteristics of 4G LTE networks",
MobiSys 2012, Tables 3 and 4; their 3G and Wi-Fi rows were measured the same way on the same phone):

- promotion: the radio wakes from idle before the first packet (``promo_mw`` for ``promo_s``);
- active: while data moves, ``beta + alpha_up * up_mbps + alpha_down * down_mbps`` (mW, rates in Mbit/s
  averaged over the transfer).  The whole upload counts as active: the gaps between files (a round trip or
  two) are far shorter than the inactivity timer, so the radio never leaves the connected state;
- tail: after the last packet the radio stays in a high-power state until its inactivity timer runs out
  (3G: DCH then FACH);
- idle: the same for every method over the same observation window (11.4 mW with the screen off), so it
  cancels out of the comparison and is left out.

``2g-edge`` uses the 3G constants (Huang et al. measured no 2G radio; Balasubramanian et al., IMC 2009,
found GSM's tail energy smaller than 3G's, so this overstates the tail on that profile for every method).

CPU: the measured CPU seconds of encoding on this machine, scaled to a phone-class ARM core by a slowdown
factor, times that core's active power.  Both factors are ranges, not measurements of ours:
``CPU_CORES`` gives a little core (Cortex-A55 class) and a big core (Cortex-A76/A78 class); the report shows
the larger (worse) of the two products.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CPU_CORES", "RADIOS", "Radio", "cpu_energy_j", "radio_energy_j", "radio_for_profile"]


@dataclass(frozen=True)
class Radio:
    name: str
    promo_mw: float
    promo_s: float
    alpha_up: float  # mW per Mbit/s uplink
    alpha_down: float  # mW per Mbit/s downlink
    beta: float  # mW while transferring
    tail: tuple[tuple[float, float], ...]  # (mW, seconds) per tail state, in order
    source: str

    @property
    def tail_j(self) -> float:
        return sum(mw * s for mw, s in self.tail) / 1000


RADIOS = {
    "lte": Radio(
        "LTE", 1210.7, 0.2601, 438.39, 51.97, 1288.04, ((1060.0, 11.576),), "Huang et al. 2012, Tables 3-4 (LTE)"
    ),
    "3g": Radio(
        "3G (UMTS)",
        659.4,
        0.5821,
        868.98,
        122.12,
        817.88,
        ((803.9, 8.0882), (601.3, 0.8242)),
        "Huang et al. 2012, Tables 3-4 (3G: DCH tail, then FACH tail)",
    ),
    "wifi": Radio(
        "Wi-Fi", 124.4, 0.0791, 283.17, 137.01, 132.86, ((119.3, 0.2381),), "Huang et al. 2012, Tables 3-4 (Wi-Fi)"
    ),
}

#: (name, active power of one core in W, slowdown of that core against one Zen 4 core at the same work).
#: Powers: the range published per-core measurements of phone SoCs span (little cores a few hundred mW or
#: less, big cores 1-2 W at their top clock); slowdowns from single-thread benchmark ratios.  Orders of
#: magnitude, deliberately pessimistic: the result is a bound, not a measurement.
CPU_CORES = (("little (Cortex-A55 class)", 0.3, 8.0), ("big (Cortex-A76/A78 class)", 2.0, 2.5))


def radio_for_profile(profile: str) -> Radio:
    return RADIOS["wifi" if profile == "wifi" else "lte" if profile.startswith("lte") else "3g"]


def radio_energy_j(radio: Radio, seconds: float, up_bytes: float, down_bytes: float) -> float:
    """Promotion + active transfer of ``seconds`` moving these bytes + tail, in joules."""
    up = up_bytes * 8 / seconds / 1e6 if seconds > 0 else 0.0
    down = down_bytes * 8 / seconds / 1e6 if seconds > 0 else 0.0
    active = (radio.beta + radio.alpha_up * up + radio.alpha_down * down) * seconds / 1000
    return radio.promo_mw * radio.promo_s / 1000 + active + radio.tail_j


def cpu_energy_j(cpu_seconds_here: float) -> float:
    """The larger estimate over ``CPU_CORES`` of the energy a phone core spends on this much of our CPU time."""
    return max(watts * slowdown * cpu_seconds_here for _, watts, slowdown in CPU_CORES)
