//! Sizes as users write them: `-maxsize` on the command line and sizes in
//! `shipping.toml`.

/// Reads a size such as `65536`, `64k`, `50m` or `2g` (powers of 1024).
/// The error says why, for the caller to wrap with the value and where it
/// came from.
/// A size for people: `512 bytes`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

pub fn parse_size(value: &str) -> Result<u64, &'static str> {
    let trimmed = value.trim();
    let (digits, multiplier) = match trimmed.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1u64 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1u64 << 30),
        Some(c) if c.is_ascii_digit() => (trimmed, 1),
        Some(_) => return Err("the suffix must be k, m or g"),
        None => return Err("it is empty"),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number");
    }
    let number: u64 = digits.parse().map_err(|_| "the number is too large")?;
    number
        .checked_mul(multiplier)
        .ok_or("the size is too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("50M"), Ok(50 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        for bad in ["", "m", "5x", "-1k", "1.5m", "99999999999999999999g"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
