//! The error type of `levee-core`.

/// An error from `levee-core`'s own setup functions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A setting has a value that cannot work.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The name of the setting, as its builder method is named.
        setting: &'static str,
        /// What is wrong and what to do instead.
        reason: String,
    },
}
