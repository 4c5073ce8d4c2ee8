//! Paid links: what a destination's link allows (`max_rate`, `hours` in
//! its `destinations` entry of shipping.toml), and the reader that holds a
//! transfer to it: a token bucket on the bytes sent and a deadline at the
//! end of the time window.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, LocalResult, NaiveTime, TimeZone, Timelike, Utc};

/// Limits on the link to one `destinations` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    /// Bytes per second sent at most (`max_rate`).
    pub max_rate: Option<u64>,
    /// The daily time window transfers may run in (`hours`).
    pub hours: Option<Hours>,
}

impl Link {
    /// Whether transfers may run at `now`, and until when: `Ok(None)` with
    /// no window, `Ok(Some(end))` inside one, `Err(next_start)` outside.
    pub fn window_at(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, DateTime<Utc>> {
        match self.hours {
            None => Ok(None),
            Some(hours) => hours.open_at(now).map(Some),
        }
    }
}

/// A daily time window, `HH:MM-HH:MM`, in local time or, with a ` UTC`
/// suffix, in UTC. A window whose end is before its start runs over
/// midnight (`22:00-06:00`). Minutes since midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub start: u32,
    pub end: u32,
    pub utc: bool,
}

const DAY: u32 = 24 * 60;

impl Hours {
    /// Reads `HH:MM-HH:MM` or `HH:MM-HH:MM UTC` (24:00 is allowed as an
    /// end). The error says why.
    pub fn parse(text: &str) -> Result<Hours, String> {
        let bad = |why: &str| {
            format!("bad hours {text:?}: {why} (expected \"HH:MM-HH:MM\", local time, or \"HH:MM-HH:MM UTC\")")
        };
        let trimmed = text.trim();
        let (range, utc) = match trimmed.strip_suffix("UTC") {
            Some(rest) => (rest.trim_end(), true),
            None => (trimmed, false),
        };
        let (start, end) = range.split_once('-').ok_or_else(|| bad("no '-'"))?;
        let minute = |part: &str, end: bool| -> Result<u32, String> {
            let part = part.trim();
            let (h, m) = part
                .split_once(':')
                .ok_or_else(|| bad(&format!("{part:?} is not HH:MM")))?;
            // One or two digits of hours, two of minutes.
            let number = |digits: &str, widths: &[usize]| {
                (widths.contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| digits.parse::<u32>().ok())
                    .flatten()
            };
            match (number(h, &[1, 2]), number(m, &[2])) {
                (Some(24), Some(0)) if end => Ok(DAY),
                (Some(h), Some(m)) if h < 24 && m < 60 => Ok(h * 60 + m),
                _ => Err(bad(&format!("{part:?} is not a time from 00:00 to 23:59"))),
            }
        };
        let hours = Hours {
            start: minute(start, false)?,
            end: minute(end, true)?,
            utc,
        };
        if hours.start == hours.end % DAY {
            return Err(bad(
                "the window is empty (or the whole day: then leave `hours` out)",
            ));
        }
        Ok(hours)
    }

    /// The minute of the day at `now` in the window's time zone.
    fn clock(&self, now: DateTime<Utc>) -> u32 {
        let time: NaiveTime = if self.utc {
            now.time()
        } else {
            now.with_timezone(&Local).time()
        };
        time.hour() * 60 + time.minute()
    }

    /// Inside the window at `now`: `Ok(end)`; outside: `Err(next start)`.
    /// The edges are wall-clock times in the window's zone (local time,
    /// as the `TZ` environment variable or the system sets it, or UTC):
    /// a daylight-saving change inside the span does not move them. An
    /// edge that falls in a gap (clocks put forward over it) is the
    /// instant the clocks jump to; one that occurs twice (clocks put
    /// back) is the first of the two.
    pub fn open_at(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, DateTime<Utc>> {
        let minute = self.clock(now);
        let end = self.end % DAY;
        let inside = if self.start < end {
            (self.start..end).contains(&minute)
        } else {
            minute >= self.start || minute < end
        };
        if inside {
            Ok(self.next_wall_clock(now, end))
        } else {
            Err(self.next_wall_clock(now, self.start))
        }
    }

    /// The first instant after `now` at which the window's clock reads
    /// `minute` (of the day).
    fn next_wall_clock(&self, now: DateTime<Utc>, minute: u32) -> DateTime<Utc> {
        let time = NaiveTime::from_hms_opt(minute / 60, minute % 60, 0).expect("a minute of a day");
        if self.utc {
            return next_in_zone(&Utc, now, time);
        }
        next_in_zone(&Local, now, time)
    }
}

/// The first instant after `now` at which the clock of zone `tz` reads
/// `time`: today's, tomorrow's or the day after's (a day may lack it).
fn next_in_zone<Tz: TimeZone>(tz: &Tz, now: DateTime<Utc>, time: NaiveTime) -> DateTime<Utc> {
    let today = now.with_timezone(tz).date_naive();
    for days in 0..3 {
        let Some(date) = today.checked_add_days(chrono::Days::new(days)) else {
            break;
        };
        let wall = date.and_time(time);
        let at = match tz.from_local_datetime(&wall) {
            LocalResult::Single(at) => Some(at),
            LocalResult::Ambiguous(first, _) => Some(first),
            // Clocks put forward over it: the instant they jump to, the
            // first minute after the gap.
            LocalResult::None => (1..=24 * 60).find_map(|later| {
                tz.from_local_datetime(&(wall + chrono::TimeDelta::minutes(later)))
                    .earliest()
            }),
        };
        let Some(at) = at.map(|at| at.with_timezone(&Utc)) else {
            continue;
        };
        // Clocks put back pass the time twice, and chrono's Local does
        // not always say so (it may give the later): the earliest instant,
        // up to two hours before, that reads the same.
        let first = (1..=8)
            .map(|quarters| at - chrono::TimeDelta::minutes(15 * quarters))
            .filter(|earlier| earlier.with_timezone(tz).naive_local() == wall)
            .min()
            .unwrap_or(at);
        for candidate in [first, at] {
            if candidate > now {
                return candidate;
            }
        }
    }
    // Unreachable with real zones (a day always has the time, or the one
    // after does); a day on is as good an answer as any.
    now + chrono::TimeDelta::days(1)
}

impl std::fmt::Display for Hours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}{}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60,
            if self.utc { " UTC" } else { "" }
        )
    }
}

/// Passes reads through, holding them to `rate` bytes a second (a token
/// bucket holding at most a twentieth of a second's worth, and at least
/// 16 KiB: over any span the bytes passed exceed the rate by that at most) and failing them once `deadline` has passed (the end of
/// the link's time window: the transfer is cut there and resumed in the
/// next one).
pub struct Throttle<R> {
    inner: R,
    rate: Option<u64>,
    deadline: Option<(Instant, String)>,
    tokens: f64,
    burst: f64,
    last: Instant,
}

impl<R> Throttle<R> {
    /// `deadline` carries the reason given when it passes.
    pub fn new(inner: R, rate: Option<u64>, deadline: Option<(Instant, String)>) -> Throttle<R> {
        let burst = rate.map_or(0.0, |r| (r as f64 / 20.0).max(16.0 * 1024.0));
        Throttle {
            inner,
            rate,
            deadline,
            // Starts empty: the first bytes wait their turn too, so a
            // short transfer is held to the rate as well as a long one.
            tokens: 0.0,
            burst,
            last: Instant::now(),
        }
    }

    fn check_deadline(&self) -> io::Result<()> {
        match &self.deadline {
            Some((at, why)) if Instant::now() >= *at => {
                Err(io::Error::new(io::ErrorKind::TimedOut, why.clone()))
            }
            _ => Ok(()),
        }
    }
}

impl<R: Read> Read for Throttle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check_deadline()?;
        let Some(rate) = self.rate else {
            return self.inner.read(buf);
        };
        let rate = rate as f64;
        // At most a burst at a time, and at least one byte.
        let want = buf.len().min(self.burst as usize).max(1);
        loop {
            let now = Instant::now();
            self.tokens =
                (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(self.burst);
            self.last = now;
            // Enough for a useful piece (or for what was asked).
            let piece = (want as f64).min(self.burst / 4.0).max(1.0);
            if self.tokens >= piece {
                break;
            }
            let wait = Duration::from_secs_f64((piece - self.tokens) / rate);
            std::thread::sleep(wait.min(Duration::from_millis(250)));
            self.check_deadline()?;
        }
        let allowed = (self.tokens as usize).min(want).max(1);
        let n = self.inner.read(&mut buf[..allowed])?;
        self.tokens -= n as f64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn hours_parse_and_refuse_clearly() {
        assert_eq!(
            Hours::parse("22:00-06:00").unwrap(),
            Hours {
                start: 22 * 60,
                end: 6 * 60,
                utc: false
            }
        );
        assert_eq!(
            Hours::parse("9:30-24:00 UTC").unwrap().to_string(),
            "09:30-24:00 UTC"
        );
        for bad in [
            "",
            "22:00",
            "25:00-06:00",
            "22:00-06:60",
            "x-y",
            "06:00-06:00",
            "00:00-24:00",
            "22:0a-06:00",
            "24:00-06:00",
        ] {
            let err = Hours::parse(bad).unwrap_err();
            assert!(err.contains("bad hours"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn windows_over_midnight_open_and_close_at_the_right_times() {
        let night = Hours::parse("22:00-06:00 UTC").unwrap();
        assert_eq!(
            night.open_at(at("2026-11-30T23:10:20Z")),
            Ok(at("2026-12-01T06:00:00Z"))
        );
        assert_eq!(
            night.open_at(at("2026-11-30T05:59:00Z")),
            Ok(at("2026-11-30T06:00:00Z"))
        );
        assert_eq!(
            night.open_at(at("2026-11-30T06:00:00Z")),
            Err(at("2026-11-30T22:00:00Z"))
        );
        let day = Hours::parse("09:00-17:00 UTC").unwrap();
        assert_eq!(
            day.open_at(at("2026-11-30T17:30:00Z")),
            Err(at("2026-12-01T09:00:00Z"))
        );
        assert_eq!(
            day.open_at(at("2026-11-30T09:00:00Z")),
            Ok(at("2026-11-30T17:00:00Z"))
        );
    }

    /// Run by [`local_windows_keep_their_wall_clock_hours_across_dst`] in
    /// a process of its own with `TZ=Europe/Berlin` (CET, CEST from the
    /// last Sunday of March to the last Sunday of October).
    #[test]
    #[ignore = "run by local_windows_keep_their_wall_clock_hours_across_dst, with TZ set"]
    fn berlin_windows() {
        assert_eq!(std::env::var("TZ").as_deref(), Ok("Europe/Berlin"));
        let night = Hours::parse("22:00-06:00").unwrap();
        // 22:30 CEST; the clocks go back at 03:00 CEST: 06:00 is CET.
        assert_eq!(
            night.open_at(at("2026-10-24T20:30:00Z")),
            Ok(at("2026-10-25T05:00:00Z"))
        );
        // 22:30 CET; forward at 02:00 CET: 06:00 is CEST.
        assert_eq!(
            night.open_at(at("2026-03-28T21:30:00Z")),
            Ok(at("2026-03-29T04:00:00Z"))
        );
        // 06:30 CET, outside: 22:00 CET.
        assert_eq!(
            night.open_at(at("2026-10-25T05:30:00Z")),
            Err(at("2026-10-25T21:00:00Z"))
        );
        // 12:00 CEST, outside: 22:00 CEST, whatever comes after.
        assert_eq!(
            night.open_at(at("2026-10-24T10:00:00Z")),
            Err(at("2026-10-24T20:00:00Z"))
        );
        let early = Hours::parse("02:30-05:00").unwrap();
        // 02:30 does not exist on 29 March: the clocks jump to 03:00 CEST.
        assert_eq!(
            early.open_at(at("2026-03-28T12:00:00Z")),
            Err(at("2026-03-29T01:00:00Z"))
        );
        // 02:30 comes twice on 25 October: the first (CEST).
        assert_eq!(
            early.open_at(at("2026-10-24T12:00:00Z")),
            Err(at("2026-10-25T00:30:00Z"))
        );
        // Inside during the repeated hour (02:45 CET, the second time):
        // 05:00 CET.
        assert_eq!(
            early.open_at(at("2026-10-25T01:45:00Z")),
            Ok(at("2026-10-25T04:00:00Z"))
        );
        // A UTC window is not moved by the local zone.
        let utc = Hours::parse("22:00-06:00 UTC").unwrap();
        assert_eq!(
            utc.open_at(at("2026-10-24T22:30:00Z")),
            Ok(at("2026-10-25T06:00:00Z"))
        );
    }

    #[test]
    fn local_windows_keep_their_wall_clock_hours_across_dst() {
        if !std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin").exists() {
            panic!("no time zone database (/usr/share/zoneinfo): install tzdata");
        }
        // The local zone is the process's TZ: set it in a process of
        // its own, which runs the ignored test above.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "link::tests::berlin_windows",
                "--ignored",
                "--test-threads=1",
            ])
            .env("TZ", "Europe/Berlin")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("1 passed"), "{text}");
    }

    #[test]
    fn the_throttle_holds_the_rate_and_stops_at_the_deadline() {
        let data = vec![7u8; 256 * 1024];
        let started = Instant::now();
        let mut out = Vec::new();
        Throttle::new(&data[..], Some(1024 * 1024), None)
            .read_to_end(&mut out)
            .unwrap();
        let took = started.elapsed().as_secs_f64();
        assert_eq!(out.len(), data.len());
        // 256 KiB at 1 MiB/s: a quarter of a second, never less.
        assert!(took >= 0.25 * 0.9, "{took} s");

        let endless = io::repeat(1);
        let mut cut = Throttle::new(
            endless,
            Some(1 << 20),
            Some((Instant::now() + Duration::from_millis(100), "closed".into())),
        );
        let err = io::copy(&mut cut, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), "closed");
    }
}
