//! Who is asking: accounts' roles and the identity a signed-in request carries.

use serde::{Deserialize, Serialize};

/// What an account may do. `admin`: everything; `member`: launch, and cancel or retry their
/// own runs and studies, browse everything; `viewer`: browse only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("role must be admin, member or viewer, got {other:?}")),
        }
    }

    /// Launching runs and studies, registering datasets.
    pub fn can_launch(self) -> bool {
        matches!(self, Role::Admin | Role::Member)
    }
}

/// The account behind a request, as the server authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    /// The session's CSRF token when the request came with a session cookie (pages); `None`
    /// for API tokens, which browsers never send on their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this account may cancel or retry what `owner` launched: its own, or anything
    /// for an administrator.
    pub fn may_change(&self, owner: Option<&str>) -> bool {
        self.is_admin() || (self.role.can_launch() && owner == Some(self.name.as_str()))
    }
}

/// An account as administrators see it (`GET /api/v1/users`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: String,
}

/// A personal API token as its owner sees it: never the secret, which is shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// A newly created token: `token` is the secret, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewToken {
    pub id: i64,
    pub name: String,
    pub token: String,
}

/// Checks an account name: what a run's `owner` may hold.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok { Ok(()) } else { Err(format!("a user name is 1 to 64 letters, digits, '.', '_', '@' or '-', got {name:?}")) }
}

/// The shortest password accepted: 12 characters (OWASP ASVS 2.1.1). Accounts made with a
/// shorter one before still sign in; the rule holds when a password is set.
pub const MIN_PASSWORD: usize = 12;

pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(format!("a password needs at least {MIN_PASSWORD} characters"));
    }
    if password.len() > 1024 {
        return Err("a password may have at most 1024 bytes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_change_what() {
        let member = Identity { user_id: 1, name: "ada".into(), role: Role::Member, csrf: None };
        assert!(member.may_change(Some("ada")));
        assert!(!member.may_change(Some("bob")));
        assert!(!member.may_change(None));
        let viewer = Identity { role: Role::Viewer, ..member.clone() };
        assert!(!viewer.may_change(Some("ada")));
        let admin = Identity { role: Role::Admin, ..member };
        assert!(admin.may_change(Some("bob")) && admin.may_change(None));
    }

    #[test]
    fn names_and_passwords() {
        assert!(check_user_name("ada.l@lab").is_ok());
        assert!(check_user_name("").is_err() && check_user_name("a b").is_err() && check_user_name("../x").is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough!").is_ok());
        assert_eq!(Role::parse("viewer"), Ok(Role::Viewer));
        assert!(Role::parse("root").unwrap_err().contains("admin, member or viewer"));
    }
}
