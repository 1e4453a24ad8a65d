//! Errors of `levee-cache`'s builders.

/// A builder setting has a value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The name of the setting, as its builder method is named.
    pub setting: &'static str,
    /// What is wrong and what to do instead.
    pub reason: String,
}

impl ConfigError {
    /// An error about `setting`.
    pub fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            setting,
            reason: reason.into(),
        }
    }
}
