use std::fmt;
use std::path::PathBuf;

/// Why a configuration was refused. Every variant names the file it came from
/// and, where there is one, the field.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read at all.
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid YAML, or does not fit the schema (unknown field,
    /// wrong type, missing field).
    Parse {
        /// The file that was parsed.
        path: PathBuf,
        /// The field, as a path from the document root (`listeners[0].address`);
        /// `None` when the error is about the document as a whole.
        field: Option<String>,
        /// Line and column (1-based), when the parser knows them.
        location: Option<(usize, usize)>,
        /// What is wrong with it.
        message: String,
    },
    /// The file parsed, but a value is not acceptable.
    Invalid {
        /// The file that was checked.
        path: PathBuf,
        /// The field, as a path from the document root.
        field: String,
        /// What is wrong with it and what to do.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Parse {
                path,
                field,
                location,
                message,
            } => {
                write!(f, "{}", path.display())?;
                if let Some((line, column)) = location {
                    write!(f, ":{line}:{column}")?;
                }
                if let Some(field) = field {
                    write!(f, ": field `{field}`")?;
                }
                write!(f, ": {message}")
            }
            ConfigError::Invalid {
                path,
                field,
                message,
            } => write!(f, "{}: field `{field}`: {message}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ConfigError {
    /// Builds a [`ConfigError::Parse`] from a serde_yaml error seen at `field`.
    pub(crate) fn parse(path: PathBuf, field: String, err: &serde_yaml::Error) -> Self {
        let location = err.location().map(|l| (l.line(), l.column()));
        // serde_yaml appends " at line L column C" to its messages; the
        // location is reported separately, so it is cut from the text.
        let mut message = err.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        let field = (!field.is_empty() && field != ".").then_some(field);
        // serde_yaml also prefixes the path of the enclosing value
        // ("listeners[0]: unknown field ..."); the field is reported whole
        // separately, so that prefix goes too.
        if let Some(field) = &field
            && let Some((prefix, rest)) = message.split_once(": ")
            && field.starts_with(prefix)
        {
            message = rest.to_string();
        }
        if message == "invalid socket address syntax" {
            message
                .push_str(": expected an IP address and port such as 127.0.0.1:8080 or [::1]:8080");
        }
        ConfigError::Parse {
            path,
            field,
            location,
            message,
        }
    }

    pub(crate) fn invalid(
        path: &std::path::Path,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }
}
