//! Secrets (a Redis password, a URL with credentials, signing and hashing
//! keys) come from an environment variable or a file, named in the config;
//! the config holds the name, never the secret, and no `Debug` prints one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::Problem;

/// A Redis URL as written in a config. Its `Debug` hides any password in
/// it (`redis://user:***@host`); credentials belong in `password_env` /
/// `password_file` or `url_env` / `url_file`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(pub String);

impl RedisUrl {
    /// The URL as written (password included, if any).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact(&self.0))
    }
}

/// `url` with the password of its user info replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

/// A secret read from the environment or a file. `Debug` prints
/// `Secret(***)`.
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads the secret named by `env` or `file` (at most one of them set);
/// `None` if neither is. `path` is the key of the config the names are
/// under (e.g. `redis.main.password`), for the error.
pub(crate) fn read(
    path: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, Problem> {
    match (env, file) {
        (Some(_), Some(_)) => Err(Problem::new(
            path,
            "both `_env` and `_file` are set; keep one",
        )),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
            Ok(_) => Err(Problem::new(
                format!("{path}_env"),
                format!("the environment variable {var} is empty; set it to the secret"),
            )),
            Err(_) => Err(Problem::new(
                format!("{path}_env"),
                format!("the environment variable {var} is not set; set it to the secret"),
            )),
        },
        (None, Some(file)) => match std::fs::read_to_string(file) {
            // A mounted secret usually ends with a newline that is not part of it.
            Ok(v) if !v.trim_end_matches(['\r', '\n']).is_empty() => {
                Ok(Some(Secret(v.trim_end_matches(['\r', '\n']).to_string())))
            }
            Ok(_) => Err(Problem::new(
                format!("{path}_file"),
                format!("the secret file {} is empty", file.display()),
            )),
            Err(e) => Err(Problem::new(
                format!("{path}_file"),
                format!("cannot read the secret file {}: {e}", file.display()),
            )),
        },
        (None, None) => Ok(None),
    }
}

/// `url` with `user` and `password` as its user info (percent-encoded).
/// The URL must not carry a password already.
#[cfg(feature = "redis")]
pub(crate) fn with_credentials(
    url: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<String, String> {
    if user.is_none() && password.is_none() {
        return Ok(url.to_string());
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{:?} is not a redis:// URL", redact(url)))?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return Err(
            "the URL has credentials already; set them in one place (the URL or username/password_*)"
                .to_string(),
        );
    }
    let user = user.map(encode).unwrap_or_default();
    let info = match password {
        Some(p) => format!("{user}:{}", encode(p)),
        None => user,
    };
    Ok(format!("{scheme}://{info}@{rest}"))
}

/// Percent-encodes all but RFC 3986's unreserved characters.
#[cfg(feature = "redis")]
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("redis://app:hunter2@cache:6379/0"),
            "redis://app:***@cache:6379/0"
        );
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
        assert!(!format!("{:?}", RedisUrl("redis://:pw@h".into())).contains("pw"));
    }

    #[test]
    #[cfg(feature = "redis")]
    fn credentials_are_percent_encoded_into_the_url() {
        assert_eq!(
            with_credentials("redis://h:6379/1", Some("app"), Some("p@ss:w/rd")).unwrap(),
            "redis://app:p%40ss%3Aw%2Frd@h:6379/1"
        );
        assert_eq!(
            with_credentials("redis://h", None, Some("x")).unwrap(),
            "redis://:x@h"
        );
        assert!(with_credentials("redis://a:b@h", None, Some("x")).is_err());
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let p = read(
            "redis.main.password",
            None,
            Some(Path::new("/nonexistent/levee-secret")),
        )
        .unwrap_err();
        assert_eq!(p.path, "redis.main.password_file");
        assert!(
            p.message.contains("/nonexistent/levee-secret"),
            "{}",
            p.message
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(***)");
    }
}
