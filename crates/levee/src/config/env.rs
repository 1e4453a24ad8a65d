//! Layering: a TOML text, then the environment over it, through figment.
//! `LEVEE_LIMITERS__API__LIMIT=200` sets `[limiters.api] limit`: the TOML
//! path in capitals, `__` between its parts.

use figment::Figment;
use figment::providers::{Env, Serialized};
use figment::value::Value;

use super::error::{ConfigFileError, Problem};
use super::file::Config;

/// The prefix of the environment variables a config reads.
pub const ENV_PREFIX: &str = "LEVEE_";

/// The environment provider: `LEVEE_<SECTION>__<ENTRY>__<KEY>=value`.
/// Variables without a `__` (`LEVEE_LOG`, say) are not config paths and
/// are left alone. Keys are read in lower case (as config keys are), so an
/// entry whose name has capitals cannot be overridden.
pub fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

/// A figment holding the TOML `text` (`source` names it in errors).
pub(crate) fn toml_layer(text: &str, source: &str) -> Result<Figment, ConfigFileError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let message = e.message().to_string();
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        ConfigFileError::one(source, format!("not valid TOML{at}: {message}"))
    })?;
    Ok(Figment::from(Serialized::defaults(table)))
}

/// Loads the merged tree of `figment`: both validation passes, then serde.
pub(crate) fn load(figment: &Figment) -> Result<Config, ConfigFileError> {
    let tree: Value = figment.extract().map_err(|e| figment_error(&e))?;
    let problems = super::validate::check(&tree);
    if !problems.is_empty() {
        return Err(ConfigFileError::new(with_sources(figment, problems)));
    }
    let config: Config = tree.deserialize().map_err(|e| figment_error(&e))?;
    let problems = super::rules::check(&config);
    if !problems.is_empty() {
        return Err(ConfigFileError::new(with_sources(figment, problems)));
    }
    Ok(config)
}

/// Problems about a value the environment set say which variable set it:
/// the file is not where to look for those.
fn with_sources(figment: &Figment, mut problems: Vec<Problem>) -> Vec<Problem> {
    for p in &mut problems {
        let from_env = !p.path.is_empty()
            && figment
                .find_metadata(&p.path)
                .is_some_and(|md| md.name.contains("environment variable"));
        if from_env {
            let var = p.path.to_ascii_uppercase().replace('.', "__");
            p.message.push_str(&format!(" (set by {ENV_PREFIX}{var})"));
        }
    }
    problems
}

fn figment_error(e: &figment::Error) -> ConfigFileError {
    ConfigFileError::new(
        e.clone()
            .into_iter()
            .map(|e| Problem::new(e.path.join("."), e.kind.to_string()))
            .collect(),
    )
}
