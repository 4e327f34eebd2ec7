//! Byte sizes as upstream writes them (`10GB`, `512mb`, `1TiB`, `100`): binary and
//! case-insensitive units, so `GB` equals `GiB` equals 1024³ (docker's `RAMInBytes`).
//! Pure functions; imports nothing outside `std`.

/// Why a string is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {0:?} (for example 10GB, 512MB, 1TiB or a byte count)")]
pub struct SizeError(pub String);

/// Parses a size into bytes.
///
/// ```
/// assert_eq!(act_runner::config::parse_size("10GB").unwrap(), 10 << 30);
/// ```
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let error = || SizeError(input.to_owned());
    let number_len = input
        .bytes()
        .take_while(|byte| byte.is_ascii_digit() || *byte == b'.')
        .count();
    let (number, suffix) = input.split_at(number_len);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(error());
    }
    let value: f64 = number.parse().map_err(|_| error())?;
    let suffix = suffix
        .strip_prefix(' ')
        .unwrap_or(suffix)
        .to_ascii_lowercase();
    let mut chars = suffix.chars();
    let shift = match chars.next() {
        None => 0,
        Some('b') if suffix == "b" => 0,
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        Some(_) => return Err(error()),
    };
    let rest = chars.as_str();
    if !matches!(rest, "" | "b" | "i" | "ib") || (shift == 0 && !rest.is_empty()) {
        return Err(error());
    }
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(error());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_case_insensitive_units() {
        for (input, bytes) in [
            ("100", 100),
            ("0", 0),
            ("1b", 1),
            ("1k", 1024),
            ("1KB", 1024),
            ("512mb", 512 << 20),
            ("10GB", 10 << 30),
            ("10GiB", 10 << 30),
            ("10g", 10 << 30),
            ("1TiB", 1 << 40),
            ("1.5g", 3 << 29),
            ("2 MB", 2 << 20),
            ("1 ", 1),
            ("1.5", 1),
        ] {
            assert_eq!(parse_size(input), Ok(bytes), "{input}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in ["", "GB", "1x", "-1", "1.2.3g", "1  ", "1gbb", "g1"] {
            assert!(parse_size(input).is_err(), "{input:?} should be invalid");
        }
    }
}
