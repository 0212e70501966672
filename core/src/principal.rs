//! Who decided: a verified principal, and whether a route's `deciders` name it. Identity is
//! verified, never declared: the CLI's is the caller's AWS identity as STS answers it, a Slack
//! interaction's the user id its signed payload carries. A decider names a principal exactly:
//! an IAM user or role ARN, a role name in the stack's own account, or a Slack user or user
//! group id (`slack:U0123ABC`, `slack:S0456DEF`). Nothing matches by a session name (an
//! assumed role's session is named by whoever assumes it) or by a substring.

use std::fmt;

/// A verified principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An IAM identity: a user, a role (an assumed role's session is the role), or an
    /// account's root.
    Iam {
        /// The account.
        account: String,
        /// User, role or root.
        kind: IamKind,
        /// The user's or role's name (the last segment: names are unique in an account,
        /// whatever their path); empty for root.
        name: String,
    },
    /// A Slack user, from a signed interaction.
    Slack(String),
    /// A name given to the local emulator (`--by` against `switchboard dev`), never to AWS.
    Local(String),
}

/// What kind of IAM identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IamKind {
    /// An IAM user.
    User,
    /// An IAM role (directly, or through an assumed-role session).
    Role,
    /// The account's root.
    Root,
}

impl Principal {
    /// The principal an ARN names, as STS's `GetCallerIdentity` answers it:
    /// `arn:aws:iam::A:user/[path/]N`, `arn:aws:iam::A:role/[path/]N`,
    /// `arn:aws:sts::A:assumed-role/ROLE/SESSION` (the role; the session name is only a note:
    /// see [`session`]), `arn:aws:iam::A:root`. None for anything else.
    pub fn from_arn(arn: &str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        let (
            Some("arn"),
            Some(_partition),
            Some(service),
            Some(_region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let iam = |kind, name: &str| {
            (!name.is_empty() || kind == IamKind::Root).then(|| Principal::Iam {
                account: account.to_string(),
                kind,
                name: name.to_string(),
            })
        };
        let last = |path: &str| path.rsplit('/').next().unwrap_or_default().to_string();
        match (service, resource.split_once('/')) {
            ("iam", None) if resource == "root" => iam(IamKind::Root, ""),
            ("iam", Some(("user", path))) => iam(IamKind::User, &last(path)),
            ("iam", Some(("role", path))) => iam(IamKind::Role, &last(path)),
            ("sts", Some(("assumed-role", rest))) => {
                let (role, _session) = rest.split_once('/')?;
                iam(IamKind::Role, role)
            }
            _ => None,
        }
    }

    /// Whether a route's decider `d` names this principal. `stack_account` is the account the
    /// stack is deployed in (a bare role name means a role there).
    pub fn is(&self, d: &str, stack_account: &str) -> bool {
        let d = d.trim();
        if let Some(slack) = d.strip_prefix("slack:") {
            return matches!(self, Principal::Slack(id) if id == slack);
        }
        if d.starts_with("arn:") {
            return Principal::from_arn(d).is_some_and(|named| {
                // A decider names a user or a role, never a session.
                !d.contains(":assumed-role/") && &named == self
            });
        }
        match self {
            Principal::Iam {
                account,
                kind: IamKind::Role,
                name,
            } => account == stack_account && name == d,
            Principal::Local(name) => name == d,
            _ => false,
        }
    }
}

/// The session name of an assumed-role ARN (chosen by whoever assumed the role: a note, never
/// an identity).
pub fn session(arn: &str) -> Option<&str> {
    arn.split_once(":assumed-role/")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, session)| session)
}

impl fmt::Display for Principal {
    /// The principal as decisions record it: an IAM ARN (a role's without its path),
    /// `slack:U…`, or `local:NAME`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Iam {
                account,
                kind: IamKind::Root,
                ..
            } => write!(f, "arn:aws:iam::{account}:root"),
            Principal::Iam {
                account,
                kind: IamKind::User,
                name,
            } => write!(f, "arn:aws:iam::{account}:user/{name}"),
            Principal::Iam {
                account,
                kind: IamKind::Role,
                name,
            } => write!(f, "arn:aws:iam::{account}:role/{name}"),
            Principal::Slack(id) => write!(f, "slack:{id}"),
            Principal::Local(name) => write!(f, "local:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = "123456789012";

    fn arn(a: &str) -> Principal {
        Principal::from_arn(a).unwrap_or_else(|| panic!("{a}"))
    }

    #[test]
    fn an_assumed_role_is_its_role_whatever_the_session_is_called() {
        let p = arn("arn:aws:sts::123456789012:assumed-role/support-lead/mallory");
        assert_eq!(p.to_string(), "arn:aws:iam::123456789012:role/support-lead");
        assert!(p.is("support-lead", STACK));
        assert!(p.is("arn:aws:iam::123456789012:role/team/support-lead", STACK));
        // The session name is chosen by the caller: it names no one.
        let forged = arn("arn:aws:sts::123456789012:assumed-role/intern/support-lead");
        assert!(!forged.is("support-lead", STACK));
        assert_eq!(
            session("arn:aws:sts::123456789012:assumed-role/intern/support-lead"),
            Some("support-lead")
        );
    }

    #[test]
    fn deciders_match_exact_principals_in_the_right_account() {
        let user = arn("arn:aws:iam::123456789012:user/ops/alice");
        assert!(user.is("arn:aws:iam::123456789012:user/alice", STACK));
        // A bare name is a role in the stack's account, never a user or a path segment.
        assert!(!user.is("alice", STACK));
        assert!(!user.is("ops", STACK));
        // The same role name in another account is someone else.
        let other = arn("arn:aws:sts::999999999999:assumed-role/support-lead/s");
        assert!(!other.is("support-lead", STACK));
        assert!(!other.is("arn:aws:iam::123456789012:role/support-lead", STACK));
        // A decider that names a session names nobody.
        let role = arn("arn:aws:iam::123456789012:role/support-lead");
        assert!(!role.is(
            "arn:aws:sts::123456789012:assumed-role/support-lead/anyone",
            STACK
        ));
        // Slack ids only match Slack users; a name only matches a local one.
        assert!(Principal::Slack("U0123ABC".into()).is("slack:U0123ABC", STACK));
        assert!(!Principal::Slack("U0123ABC".into()).is("U0123ABC", STACK));
        assert!(!role.is("slack:support-lead", STACK));
        assert!(Principal::Local("ops".into()).is("ops", STACK));
        assert!(!Principal::Local("ops".into()).is("arn:aws:iam::123456789012:role/ops", STACK));
    }

    #[test]
    fn what_is_not_an_identity_arn_is_refused() {
        for bad in [
            "support-lead",
            "arn:aws:iam::123456789012:group/ops",
            "arn:aws:iam::12345678901x:user/a",
            "arn:aws:sts::123456789012:assumed-role/only-a-role",
            "arn:aws:iam::123456789012:user/",
            "arn:aws:s3:::bucket",
        ] {
            assert!(Principal::from_arn(bad).is_none(), "{bad}");
        }
        assert_eq!(
            arn("arn:aws:iam::123456789012:root").to_string(),
            "arn:aws:iam::123456789012:root"
        );
    }
}
