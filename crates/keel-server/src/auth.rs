//! Who is calling. The authentication middleware ([`crate::require_token`]
//! today) puts a [`Caller`] into every request's extensions before any
//! handler runs; handlers that record an actor (audit rows, run owners) take
//! it from there, never from a name the client sends in its body.

/// The authenticated identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user name recorded in the audit log and on runs.
    pub user: String,
    /// Admins pass every permission check.
    pub admin: bool,
    /// Whether the server checked a credential (false on an open server,
    /// where MLflow's clients name their own user on the runs they create).
    pub authenticated: bool,
}

impl Caller {
    /// A server with no authentication configured: every caller is the same
    /// anonymous administrator (loopback binds, or `--allow-unauthenticated`).
    pub fn anonymous() -> Caller {
        Caller {
            user: "anonymous".to_string(),
            admin: true,
            authenticated: false,
        }
    }

    /// The holder of the server's shared `--auth-token`.
    pub fn shared_token() -> Caller {
        Caller {
            user: "token".to_string(),
            admin: true,
            authenticated: true,
        }
    }
}
