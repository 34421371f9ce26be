//! Kubernetes resource quantities (`500m`, `2`, `256Mi`, `1G`, `1.5Gi`).
//!
//! Only the forms used for CPU and memory limits are accepted: a decimal number followed by an
//! optional suffix — binary (`Ki Mi Gi Ti Pi Ei`), decimal (`k M G T P E`) or milli (`m`).
//! Exponent forms (`1e3`) are rejected with an error rather than guessed.

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid quantity {input:?}: expected a number with an optional suffix (m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei)"
)]
pub struct QuantityError {
    /// The text that failed.
    pub input: String,
}

/// Parses a quantity into its value scaled by `scale` and rounded up to an integer.
///
/// `scale` = 1 gives bytes (for memory); `scale` = 1e9 gives nano-units (for CPU → `NanoCpus`).
pub fn parse_scaled(input: &str, scale: f64) -> Result<u64, QuantityError> {
    let err = || QuantityError {
        input: input.to_string(),
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number.starts_with('.') && number.len() == 1 {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return Err(err()),
    };
    let scaled = (value * multiplier * scale).ceil();
    if !scaled.is_finite() || scaled < 0.0 || scaled > u64::MAX as f64 {
        return Err(err());
    }
    Ok(scaled as u64)
}

/// Memory quantity in bytes.
pub fn parse_bytes(input: &str) -> Result<u64, QuantityError> {
    parse_scaled(input, 1.0)
}

/// CPU quantity in nano-CPUs (the engine's `NanoCpus`: 1 CPU = 1e9).
pub fn parse_nano_cpus(input: &str) -> Result<u64, QuantityError> {
    parse_scaled(input, 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_bytes("256Mi"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1.5Gi"), Ok(1024 * 1024 * 1536));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("12XB").is_err());
        assert!(parse_bytes("Mi").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("1e3").is_err());
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_nano_cpus("500m"), Ok(500_000_000));
        assert_eq!(parse_nano_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_nano_cpus("0.25"), Ok(250_000_000));
    }
}
