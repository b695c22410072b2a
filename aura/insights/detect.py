"""One online model per metric series: a river forecaster with a prediction band, a sequential test
for level shifts, and the rules that turn them into alerts (pure, picklable).

A point is ``(value, weight)``: a rate with its denominator (conversion = purchases / views, with the
views), a count, or a sum with the number of events behind it (revenue, with the orders). Per series:

* ``time_series.HoltWinters`` (level only: a trend term that river starts from the first two noisy
  points misleads for hours, so trends are read from the residuals) forecasts the next minute of the
  deseasonalized value; a factor per hour of day (``stats.EWMean`` of value / level) carries the
  daily season once a day of data has been seen;
* the band: the sampling noise the kind implies (binomial for rates, Poisson for counts, compound
  Poisson for sums such as revenue) times an overdispersion learned online (``stats.EWVar`` of the
  standardized residuals). ``z`` is the residual in band units;
* a two-sided CUSUM of the log-likelihood ratio of "moved by ``shift`` of the forecast" against
  "did not" flags level shifts (its allowance follows the band, point by point: see ``_cusum``;
  river's ``drift.PageHinkley`` is the same sum with one fixed allowance in the input's units); a
  single ``|z| >= spike_z`` flags a spike; a shift whose residuals grew steadily is reported as a
  trend. A flag also needs a mean relative change of ``min_change`` since the CUSUM left zero (a
  shift of a size worth reporting, not only a significant one);
* warm-up: no alert before ``warmup`` points. While an alert is open the level learns ten times
  slower (the anomaly barely moves it); the series recovers when the mean of its last ``recover``
  points is back near the expectation it had when the alert opened (a single point says little at
  minute grain), or accepts the new level after ``max_open``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from river import stats, time_series

KINDS = ("rate", "count", "sum")
RECENT = 20
FORECASTS = 45  # forecasts kept: the expectation before a change and the slope it had


@dataclass(frozen=True)
class DetectorConfig:
    """Tuning of every series model (bench/insights.py measures these defaults)."""

    alpha: float = 0.05          # HoltWinters level smoothing (per minute) of counts and sums (daily cycles)
    rate_alpha: float = 0.02     # ... of rates (no cycle of their own: a slower level separates shifts sooner)
    open_alpha: float = 0.006    # level smoothing while an alert is open (the baseline moves slowly)
    warmup: int = 60             # points before the first alert
    spike_z: float = 6.0         # one point this far out of the band is a spike
    shift: float = 0.3           # the relative change the sequential test is designed for
    cusum_h: float = 12.0        # its alarm level (log-likelihood ratio, nats)
    cusum_clip: float = 2.0      # residuals enter the test clipped at the alternative plus this (band units)
    min_change: float = 0.12     # relative change from baseline below which nothing is flagged
    recover: int = 8             # points whose mean is back near the baseline close an alert
    recover_z: float = 0.75      # ... within this many band units on average
    max_open: int = 180          # points after which a persistent change is the new level
    min_weight: float = 30.0     # rates: minimum denominator of a usable point
    min_expected: float = 20.0   # counts: minimum forecast of a usable point
    min_events: float = 8.0      # sums: minimum events (orders) behind a usable point
    season_after: int = 1440     # points (one day of minutes) before hour-of-day factors apply
    season_fading: float = 0.005  # EWMean fading of the hour-of-day factors (per point of that hour: ~3 days)
    season_kinds: tuple[str, ...] = ()  # kinds given hour-of-day factors (off: see docs/insights.md)
    var_fading: float = 0.01     # EWVar fading factor of the standardized residuals
    carry_kinds: tuple[str, ...] = ("count", "sum")  # kinds whose pre-change baseline follows its slope while open


@dataclass
class Alert:
    """What one series flagged at one point."""

    kind: str            # spike | level_shift | trend
    direction: int       # +1 up, -1 down
    z: float
    expected: float
    value: float


@dataclass
class SeriesModel:
    """The online model of one series (metric x dimension value)."""

    kind: str
    cfg: DetectorConfig = field(default_factory=DetectorConfig)
    n: int = 0
    hw: time_series.HoltWinters | None = None
    disp: stats.EWVar | None = None
    disp0: stats.Var | None = None  # the plain variance, while the exponential one is still biased low
    events: stats.EWMean | None = None  # sums: the usual number of events (orders) behind a point
    cu_up: float = 0.0           # one-sided CUSUMs of the log-likelihood ratio (change up / down)
    cu_dn: float = 0.0
    run_up: int = 0              # points since each CUSUM was last zero (where the change began)
    run_dn: int = 0
    exp_events: float = 0.0      # sums: the events (orders) expected behind the current point
    season: dict[int, stats.EWMean] = field(default_factory=dict)
    alert: Alert | None = None   # the open alert, if any
    baseline: float = 0.0        # the (deseasonalized) expectation before the open alert's change
    slope: float = 0.0           # ... and its movement per point then (counts and sums follow the day)
    open_for: int = 0
    held: bool = False
    calm: int = 0
    last_z: float = 0.0
    recent: list[float] = field(default_factory=list)  # the last few z (where a change started)
    recent_rel: list[float] = field(default_factory=list)  # the last few (value - forecast) / forecast
    recent_f: list[float] = field(default_factory=list)  # the last few forecasts
    since: list[tuple[float, float]] = field(default_factory=list)  # open alert: (z, relative) vs its baseline

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown series kind {self.kind!r}")
        if self.hw is None:
            self.hw = self._new_hw()
            self.disp = stats.EWVar(fading_factor=self.cfg.var_fading)
            self.disp0 = stats.Var()
            self.events = stats.EWMean(fading_factor=0.05) if self.kind == "sum" else None

    def _alpha(self) -> float:
        return self.cfg.rate_alpha if self.kind == "rate" else self.cfg.alpha

    def _new_hw(self) -> time_series.HoltWinters:
        return time_series.HoltWinters(alpha=self._alpha())

    def _reset_cusum(self) -> None:
        self.cu_up = self.cu_dn = 0.0
        self.run_up = self.run_dn = 0

    def _cusum(self, z: float, f: float, scale: float) -> None:
        """One step of the two one-sided CUSUMs of the log-likelihood ratio of "the value moved by
        ``shift`` of its forecast" against "it did not", in band units: the alternative is ``delta =
        shift * f / scale`` band units away, so a series with many events (a narrow band) gathers
        evidence fast and a thin one slowly, each at the same false-alarm rate (``exp(cusum_h)``
        points on average between false alarms of a Gaussian series). ``z`` is clipped at ``cusum_clip``
        band units beyond the alternative, so a few outliers (the right tail of a sum of a few
        orders) cannot carry the test alone."""
        c = self.cfg
        delta = min(8.0, max(0.25, c.shift * f / scale)) if scale > 0 and f > 0 else 0.25
        lim = delta + c.cusum_clip
        zc = max(-lim, min(lim, z))
        cap = 3 * c.cusum_h
        up = min(cap, max(0.0, self.cu_up + delta * zc - delta * delta / 2))
        dn = min(cap, max(0.0, self.cu_dn - delta * zc - delta * delta / 2))
        self.run_up = self.run_up + 1 if up > 0 else 0
        self.run_dn = self.run_dn + 1 if dn > 0 else 0
        self.cu_up, self.cu_dn = up, dn

    # --- forecasting -------------------------------------------------------------------------

    def _factor(self, hour: int) -> float:
        m = self.season.get(hour)
        if self.n < self.cfg.season_after or m is None or m.get() <= 0 or self.kind not in self.cfg.season_kinds:
            return 1.0
        return float(m.get())

    def expected(self, hour: int) -> float | None:
        """The forecast of the next point (None until the forecaster is initialised)."""
        if not self.hw._initialized:  # noqa: SLF001 - river exposes no public flag
            return None
        return max(0.0, float(self.hw.forecast(1)[0]) * self._factor(hour))

    def _sampling_var(self, f: float, weight: float) -> float:
        if self.kind == "rate":
            p = min(max(f, 1e-4), 1 - 1e-4)
            return p * (1 - p) / max(weight, 1.0)
        if self.kind == "sum":  # compound Poisson over the expected events (orders); their sizes' spread is in phi
            return max(f * f / max(self.exp_events, 1.0), 1e-9)
        return max(f, 1.0)  # counts: Poisson

    @property
    def phi_sd(self) -> float:
        """The overdispersion as a factor on the sampling standard deviation (at least 1 for rates
        and counts: the band is never narrower than the sampling noise)."""
        if self.n <= 5:
            phi = 1.0
        elif self.n < 3 / self.cfg.var_fading and self.disp0 is not None:
            phi = self.disp0.get()
        else:
            phi = self.disp.get()
        return math.sqrt(max(1.0, phi))

    def _scale(self, f: float, weight: float) -> float:
        return math.sqrt(self._sampling_var(f, weight)) * self.phi_sd

    def usable(self, f: float | None, weight: float) -> bool:
        if f is None:
            return False
        if self.kind == "rate":
            return weight >= self.cfg.min_weight
        if self.kind == "sum":  # judged on the events expected, not those that came (which would bias it up)
            return self.exp_events >= self.cfg.min_events and weight > 0 and f > 0
        return f >= self.cfg.min_expected

    # --- one point -----------------------------------------------------------------------------

    def _learn(self, y: float, hour: int, alpha: float | None = None) -> None:
        fac = self._factor(hour)
        level = float(self.hw.forecast(1)[0]) if self.hw._initialized else y  # noqa: SLF001
        self.hw.level.alpha = self._alpha() if alpha is None else alpha
        self.hw.learn_one(y / fac if fac > 0 else y)
        if alpha is not None:
            return
        if level > 0:
            self.season.setdefault(hour, stats.EWMean(fading_factor=self.cfg.season_fading)).update(y / level)
        self.n += 1

    def update(self, value: float, weight: float, hour: int, hold: bool = False) -> Alert | None:
        """Feed one point; returns a new alert when one opens at this point (None otherwise).

        ``self.alert`` stays set while the series is out of its band; it clears on recovery. ``hold``:
        another series of the metric is in an incident, so this one learns slowly too (it would
        otherwise learn the incident and flag the return to normal as a change of its own)."""
        c = self.cfg
        f = self.expected(hour)
        if self.events is not None:  # sums: the events expected behind this point, before it is seen
            self.exp_events = float(self.events.get()) if self.n else weight
            if self.alert is None and not hold:
                self.events.update(weight)
        if not self.usable(f, weight):
            if self.alert is None and (self.kind != "rate" or weight > 0):
                self._learn(value, hour)
            return None
        scale = self._scale(f, weight)
        z = (value - f) / scale if scale > 0 else 0.0
        z = max(-50.0, min(50.0, z))
        self.last_z = z
        self.recent = [*self.recent[-(RECENT - 1):], z]
        self.recent_rel = [*self.recent_rel[-(RECENT - 1):], (value - f) / f if f > 0 else 0.0]
        self.recent_f = [*self.recent_f[-(FORECASTS - 1):], f]
        if self.alert is not None:  # a slowly moving baseline: wait for recovery or accept the new level
            self.open_for += 1
            # the expectation before the change, carried along the slope it had (the daily cycle goes on
            # during an incident) and the hour-of-day factor
            carried = min(2 * self.baseline, max(0.5 * self.baseline, self.baseline + self.slope * self.open_for))
            b = carried * self._factor(hour)
            zb = (value - b) / scale if scale > 0 else 0.0
            rb = (value - b) / b if b > 0 else 0.0
            self.since = [*self.since[-(c.recover - 1):], (zb, rb)]
            mz = sum(x[0] for x in self.since) / len(self.since)
            mr = sum(x[1] for x in self.since) / len(self.since)
            back = len(self.since) >= c.recover and (abs(mz) < c.recover_z or abs(mr) < 0.5 * c.min_change)
            self.calm = c.recover if back else 0
            self._learn(value, hour, c.open_alpha)
            if self.calm >= c.recover or self.open_for >= c.max_open:
                recovered = self.calm >= c.recover
                # restart the level from the recent points: the new normal after a long change, or the
                # old one back (the slow learning during the incident must not read as a change)
                recent = [b * (1 + r) for _z, r in self.since] if recovered else [value]
                self._close(sum(recent) / len(recent) / self._factor(hour))
            return None
        rel = abs(value - f) / f if f > 0 else math.inf
        if hold:  # the test pauses (it would take the incident's return for a shift of its own)
            self.held = True
        elif self.held:
            # the incident that held this series is over: restart the level from the latest points (it
            # learned slowly meanwhile and lags what the day did since)
            self._reset_cusum()
            self.held = False
            pts = [fx * (1 + r) for fx, r in zip(self.recent_f[-c.recover:], self.recent_rel[-c.recover:], strict=True)]
            fac = self._factor(hour)
            if len(pts) >= c.recover and fac > 0:
                self._restart(sum(pts) / len(pts) / fac)
                f = self.expected(hour)
                scale = self._scale(f, weight)
                z = max(-50.0, min(50.0, (value - f) / scale if scale > 0 else 0.0))
                rel = abs(value - f) / f if f > 0 else math.inf
        if self.n >= c.warmup and not hold:  # the sequential test starts once the band is learned
            self._cusum(z, f, scale)
        new: Alert | None = None
        if self.n >= c.warmup:
            few = self.kind == "sum" and self.events is not None and self.events.get() < 4 * c.min_events
            if abs(z) >= c.spike_z and rel >= 2 * c.min_change and not few and not hold:
                new = Alert("spike", 1 if z > 0 else -1, z, f, value)
            else:
                for d, cu, run in ((1, self.cu_up, self.run_up), (-1, self.cu_dn, self.run_dn)):
                    # evidence enough; then the size gate: the mean change since the CUSUM left zero
                    if cu >= c.cusum_h and self._run_change(run) * d >= c.min_change:
                        new = Alert("trend" if self._gradual(d) else "level_shift", d, z, f, value)
                        break
        if new is not None:
            # recovery is judged against the expectation before the change began (the model has
            # partly learned the change by the time it is confirmed)
            back = min(self.onset(new.direction), len(self.recent_f) - 1)
            base = self.recent_f[-1 - back]
            new.expected = base
            fac = self._factor(hour)
            self.alert, self.open_for, self.calm, self.since = new, 0, 0, []
            self.baseline = base / fac if fac > 0 else base  # deseasonalized: recovery follows the day
            pre = self.recent_f[: len(self.recent_f) - back][-30:]
            self.slope = (pre[-1] - pre[0]) / (len(pre) - 1) / (fac if fac > 0 else 1.0) \
                if self.kind in c.carry_kinds and len(pre) >= 6 else 0.0
            self._reset_cusum()
            return new
        # clipped at 4 band units after the warm-up: an outlier or the first points of a shift must not widen the band
        # that judges them
        u = (value - f) / math.sqrt(self._sampling_var(f, weight))
        if self.n >= c.warmup:
            cap = 4.0 * self.phi_sd
            u = max(-cap, min(cap, u))
        if hold:
            self._learn(value, hour, c.open_alpha)
            return None
        self.disp.update(u)
        if self.disp0 is not None and self.n < 3 / c.var_fading:
            self.disp0.update(u)
        self._learn(value, hour)
        return None

    def _gradual(self, direction: int) -> bool:
        """A trend rather than a step: over the last points the residual grew steadily in
        ``direction`` (least-squares slope of at least 0.15 band units per point over 10+ points)."""
        zs = self.recent[-RECENT:]
        if len(zs) < 10:
            return False
        n = len(zs)
        mx, my = (n - 1) / 2, sum(zs) / n
        slope = sum((i - mx) * (z - my) for i, z in enumerate(zs)) / sum((i - mx) ** 2 for i in range(n))
        early = sum(zs[: n // 2]) / (n // 2)
        return slope * direction >= 0.15 and early * direction < 1.0

    def _run_change(self, run: int) -> float:
        """The mean relative change over the last ``run`` points (at least 3, at most the recent
        ones kept): the size of a shift, not of one noisy point."""
        tail = self.recent_rel[-max(3, min(run, RECENT)):]
        return sum(tail) / len(tail) if tail else 0.0

    def onset(self, direction: int | None = None) -> int:
        """How many points before the latest one the change started: the CUSUM change-point estimate
        over the recent residuals (the last point at which a one-sided CUSUM was zero), plus the
        points the alert has been open."""
        if self.alert is None and direction is None:
            return 0
        d = direction if direction is not None else self.alert.direction
        zs = self.recent[: len(self.recent) - self.open_for] if self.open_for else self.recent
        cusum, start = 0.0, len(zs) - 1
        for i, z in enumerate(zs):
            cusum = max(0.0, cusum + z * d - 0.5)
            if cusum == 0.0:
                start = i + 1
        return max(0, len(zs) - 1 - min(start, len(zs) - 1)) + self.open_for

    def _close(self, level: float) -> None:
        """Clear the alert and restart the (deseasonalized) level at ``level``."""
        self.alert = None
        self.open_for = self.calm = 0
        self.since = []
        self._reset_cusum()
        self._restart(level)

    def _restart(self, level: float) -> None:
        self.hw = self._new_hw()
        self.hw.learn_one(level)
        self.hw.learn_one(level)
