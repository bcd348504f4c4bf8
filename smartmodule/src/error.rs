//! The error a SmartModule function returns.
//!
//! Like `eyre::Report`, [`Error`] deliberately does not implement `std::error::Error`: that is
//! what lets `From<E: std::error::Error>` exist, so `?` converts any error (UTF-8, JSON,
//! integer parsing...) without a heavy dependency in the guest.

use std::fmt;

/// An error from a SmartModule: a message, with the messages of its sources appended.
pub struct Error {
    message: String,
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error carrying `message`.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The full message, sources included.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self { message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<i32> {
        Ok(s.parse::<i32>()?)
    }

    fn utf8(b: &[u8]) -> Result<&str> {
        Ok(std::str::from_utf8(b)?)
    }

    #[test]
    fn question_mark_converts_std_errors() {
        assert_eq!(parse("12").unwrap(), 12);
        assert!(parse("x").unwrap_err().message().contains("invalid digit"));
        assert!(utf8(&[0xff]).is_err());
        assert_eq!(Error::msg("plain").to_string(), "plain");
    }

    #[test]
    fn fluvio_names_build_errors_as_fluvio_modules_use_them() {
        let key = "colour";
        let e: Error = crate::eyre!("failed setting {key}: {:?}", 7);
        assert_eq!(e.message(), "failed setting colour: 7");
        let missing: Error =
            crate::dataplane::smartmodule::SmartModuleInitError::MissingParam("key".into()).into();
        assert_eq!(
            missing.message(),
            "Missing param key: give it with -e key=VALUE"
        );
    }
}
