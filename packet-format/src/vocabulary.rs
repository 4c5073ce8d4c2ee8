//! Packet vocabulary shared by every syncreplica crate: replica, family and
//! hop names appear in packet headers and file names. (Sizes such as `50m`
//! are command-line and configuration vocabulary: `shipping::size`.)

/// Checks a replica, family or hop name: 1 to 64 of letters, digits, `_`,
/// `-` and `.`, not starting with `-` or `.`. The error says why, for the
/// caller to wrap with the name and where it came from.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 64 {
        return Err("it is longer than 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("use only letters, digits, '_', '-' and '.'");
    }
    if name.starts_with(['-', '.']) {
        return Err("it must not start with '-' or '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_portable() {
        assert!(check_name("boston_hub-2.lab").is_ok());
        for bad in ["", "a b", "-x", ".x", "a/b", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
