//! [`ConfigFileError`]: every problem found in a configuration, each with the
//! full path of the key it is about.

/// One problem in a configuration: the key's full path (e.g.
/// `pipelines.userinfo.retry.max_attempts`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The dotted path of the key (or section) the problem is about.
    pub path: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A configuration could not be loaded or built. Holds every problem found
/// in one pass (not only the first), so one run shows all there is to fix;
/// `Display` prints one problem a line.
///
/// ```
/// # #[cfg(feature = "config")] {
/// let err = "[limiters.api]\nlimit = -1\nwindow = \"5 parsecs\"\n"
///     .parse::<levee::Config>()
///     .unwrap_err();
/// assert_eq!(err.problems().len(), 2);
/// assert!(err.to_string().contains("limiters.api.limit: expected a positive integer, got -1"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError {
    problems: Vec<Problem>,
}

impl ConfigFileError {
    pub(crate) fn new(problems: Vec<Problem>) -> Self {
        debug_assert!(!problems.is_empty());
        ConfigFileError { problems }
    }

    pub(crate) fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigFileError::new(vec![Problem::new(path, message)])
    }

    /// The problems, in the order they were found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Whether some problem is about `path` or a key below it.
    pub fn mentions(&self, path: &str) -> bool {
        self.problems
            .iter()
            .any(|p| p.path == path || p.path.starts_with(&format!("{path}.")))
    }
}

impl std::fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid levee config: {one}"),
            many => {
                write!(f, "invalid levee config ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigFileError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_prints_each_problem_on_its_own_line() {
        let err = ConfigFileError::new(vec![
            Problem::new("a.b", "first"),
            Problem::new("c", "second"),
        ]);
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1].trim(), "a.b: first");
        assert_eq!(lines[2].trim(), "c: second");
    }

    #[test]
    fn mentions_matches_the_path_and_keys_below_it() {
        let err = ConfigFileError::one("limiters.api.limit", "bad");
        assert!(err.mentions("limiters.api"));
        assert!(err.mentions("limiters.api.limit"));
        assert!(!err.mentions("limiters.ap"));
    }
}
