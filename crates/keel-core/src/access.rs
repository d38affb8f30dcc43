//! Permissions as MLflow's basic-auth app names them: the levels a user may
//! hold on an experiment or a registered model, what each level allows, and
//! the resource types a grant can name. The store keeps grants; the server
//! decides with [`Permission::allows`].

use std::fmt;

use crate::Error;

/// A permission level, weakest first (MLflow's order: `NO_PERMISSIONS` <
/// `READ` < `USE` < `EDIT` < `MANAGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    NoPermissions,
    Read,
    Use,
    Edit,
    Manage,
}

impl Permission {
    /// Every level, weakest first.
    pub const ALL: [Permission; 5] = [
        Permission::NoPermissions,
        Permission::Read,
        Permission::Use,
        Permission::Edit,
        Permission::Manage,
    ];

    /// The wire name (`READ`, `NO_PERMISSIONS`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::NoPermissions => "NO_PERMISSIONS",
            Permission::Read => "READ",
            Permission::Use => "USE",
            Permission::Edit => "EDIT",
            Permission::Manage => "MANAGE",
        }
    }

    /// Parses a wire name, naming the valid ones on error.
    pub fn parse(name: &str) -> Result<Permission, Error> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| {
                Error::invalid_parameter(format!(
                    "Invalid permission '{name}'. Valid permissions are: READ, USE, EDIT, MANAGE, NO_PERMISSIONS"
                ))
            })
    }

    /// Whether holding `self` satisfies a requirement of `needed`.
    pub fn allows(self, needed: Permission) -> bool {
        self >= needed
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a grant names: MLflow's `resource_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Experiment,
    RegisteredModel,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Experiment => "experiment",
            ResourceType::RegisteredModel => "registered_model",
        }
    }

    pub fn parse(name: &str) -> Result<ResourceType, Error> {
        match name {
            "experiment" => Ok(ResourceType::Experiment),
            "registered_model" => Ok(ResourceType::RegisteredModel),
            other => Err(Error::invalid_parameter(format!(
                "Invalid resource type '{other}'. keel supports: experiment, registered_model"
            ))),
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceType::Experiment => "experiment",
            ResourceType::RegisteredModel => "registered model",
        })
    }
}

/// MLflow's password rule: at least 12 characters.
pub fn validate_password(password: &str) -> Result<(), Error> {
    if password.chars().count() < 12 {
        return Err(Error::invalid_parameter(
            "Password must be at least 12 characters.",
        ));
    }
    Ok(())
}

/// A user name: not empty, at most 256 characters, no control characters
/// and no `:` (HTTP basic auth splits on the first one).
pub fn validate_username(username: &str) -> Result<(), Error> {
    if username.is_empty() {
        return Err(Error::invalid_parameter("Username cannot be empty."));
    }
    if username.chars().count() > 256 || username.chars().any(|c| c.is_control() || c == ':') {
        return Err(Error::invalid_parameter(
            "Username must be at most 256 characters, without ':' or control characters.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_like_mlflow() {
        assert!(Permission::Manage.allows(Permission::Edit));
        assert!(Permission::Edit.allows(Permission::Use));
        assert!(!Permission::Read.allows(Permission::Edit));
        assert!(!Permission::NoPermissions.allows(Permission::Read));
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()).unwrap(), p);
        }
        assert!(Permission::parse("DENY").is_err());
    }

    #[test]
    fn password_and_username_rules() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("twelve-chars").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("a:b").is_err());
        assert!(validate_username("alice").is_ok());
    }
}
