//! What the preload engine does with a statically linked program, which it cannot confine
//! (`SCAR_PRELOAD_STATIC`).

/// What the engine does with a statically linked program, which it cannot confine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StaticPolicy {
    /// Run it with the host's view, and report it.
    #[default]
    Warn,
    /// Refuse to run it (the first program:
    /// [`EngineError::StaticRefused`](crate::engine::EngineError::StaticRefused); a child:
    /// `EACCES`).
    Refuse,
}

impl StaticPolicy {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warn => "warn",
            Self::Refuse => "refuse",
        }
    }
}

impl std::str::FromStr for StaticPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "warn" => Ok(Self::Warn),
            "refuse" => Ok(Self::Refuse),
            other => Err(format!("`{other}` is not a policy: use warn or refuse")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_policies_parse_and_a_wrong_one_names_the_choices() {
        assert_eq!("warn".parse::<StaticPolicy>(), Ok(StaticPolicy::Warn));
        assert_eq!("refuse".parse::<StaticPolicy>(), Ok(StaticPolicy::Refuse));
        let err = "deny".parse::<StaticPolicy>().unwrap_err();
        assert!(err.contains("warn or refuse"), "{err}");
    }
}
