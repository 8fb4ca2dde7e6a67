//! How both ends of a scale-out deployment authenticate to NATS: the NATS sink plugin
//! (collectors) and the engine's NATS source (aggregators) take the same keys — `token`, or
//! `user` and `password`, or the secret read from a file (`token_file`, `password_file`) so it
//! stays out of the config file — and turn them into a [`NatsAuth`] here. No NATS client types:
//! each end hands the result to its own connection options.

use std::path::Path;

/// The largest secret file read (a token or password, not a document).
pub const SECRET_FILE_MAX_BYTES: u64 = 4_096;

/// What a client presents when it connects.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    /// No credentials (a server without authorization).
    #[default]
    None,
    Token(String),
    UserPassword {
        user: String,
        password: String,
    },
}

impl std::fmt::Debug for NatsAuth {
    /// Never prints a secret.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => formatter.write_str("None"),
            NatsAuth::Token(_) => formatter.write_str("Token(<redacted>)"),
            NatsAuth::UserPassword { user, .. } => {
                write!(
                    formatter,
                    "UserPassword {{ user: {user:?}, password: <redacted> }}"
                )
            }
        }
    }
}

/// A key combination that cannot work; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` {reason}")]
pub struct NatsAuthError {
    pub key: &'static str,
    pub reason: String,
}

fn fail(key: &'static str, reason: impl Into<String>) -> NatsAuthError {
    NatsAuthError {
        key,
        reason: reason.into(),
    }
}

/// Reads a secret file: at most [`SECRET_FILE_MAX_BYTES`], UTF-8, surrounding whitespace (the
/// newline an editor adds) trimmed, not empty.
fn read_secret(key: &'static str, path: &Path) -> Result<String, NatsAuthError> {
    let metadata = std::fs::metadata(path)
        .map_err(|error| fail(key, format!("cannot be read ({}): {error}", path.display())))?;
    if metadata.len() > SECRET_FILE_MAX_BYTES {
        return Err(fail(
            key,
            format!(
                "is larger than {SECRET_FILE_MAX_BYTES} bytes ({})",
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| fail(key, format!("cannot be read ({}): {error}", path.display())))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(fail(key, format!("is empty ({})", path.display())));
    }
    Ok(secret.to_string())
}

/// The credentials from the config keys (each `None` when absent): a token (inline or from a
/// file), or a user with a password (inline or from a file), or nothing. Mixing them, a user
/// without a password, or an inline secret beside its file is refused.
pub fn nats_auth(
    token: Option<&str>,
    token_file: Option<&Path>,
    user: Option<&str>,
    password: Option<&str>,
    password_file: Option<&Path>,
) -> Result<NatsAuth, NatsAuthError> {
    if token.is_some() && token_file.is_some() {
        return Err(fail("token", "and `token_file` are both set: give one"));
    }
    if password.is_some() && password_file.is_some() {
        return Err(fail(
            "password",
            "and `password_file` are both set: give one",
        ));
    }
    let has_token = token.is_some() || token_file.is_some();
    let has_password = password.is_some() || password_file.is_some();
    if has_token && (user.is_some() || has_password) {
        return Err(fail(
            "token",
            "and `user`/`password` are both set: a server takes one or the other",
        ));
    }
    if let Some(token) = token {
        if token.is_empty() {
            return Err(fail("token", "is empty"));
        }
        return Ok(NatsAuth::Token(token.to_string()));
    }
    if let Some(path) = token_file {
        return Ok(NatsAuth::Token(read_secret("token_file", path)?));
    }
    match (user, has_password) {
        (None, false) => Ok(NatsAuth::None),
        (None, true) => Err(fail("password", "is set without `user`")),
        (Some(_), false) => Err(fail("user", "is set without `password` or `password_file`")),
        (Some(user), true) => {
            if user.is_empty() {
                return Err(fail("user", "is empty"));
            }
            let password = match (password, password_file) {
                (Some(password), _) => password.to_string(),
                (None, Some(path)) => read_secret("password_file", path)?,
                (None, None) => unreachable!("has_password"),
            };
            Ok(NatsAuth::UserPassword {
                user: user.to_string(),
                password,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_combination() {
        assert_eq!(nats_auth(None, None, None, None, None), Ok(NatsAuth::None));
        assert_eq!(
            nats_auth(Some("s3"), None, None, None, None),
            Ok(NatsAuth::Token("s3".into()))
        );
        assert_eq!(
            nats_auth(None, None, Some("u"), Some("p"), None),
            Ok(NatsAuth::UserPassword {
                user: "u".into(),
                password: "p".into()
            })
        );
        let refused = [
            (
                nats_auth(Some("t"), None, Some("u"), Some("p"), None),
                "token",
            ),
            (nats_auth(None, None, Some("u"), None, None), "user"),
            (nats_auth(None, None, None, Some("p"), None), "password"),
            (nats_auth(Some(""), None, None, None, None), "token"),
            (
                nats_auth(Some("t"), Some(Path::new("/x")), None, None, None),
                "token",
            ),
        ];
        for (result, key) in refused {
            assert_eq!(result.map_err(|error| error.key), Err(key));
        }
    }

    #[test]
    fn secrets_from_files_are_trimmed_bounded_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("tickflow-nats-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch");
        let token_path = dir.join("token");
        std::fs::write(&token_path, "t0ken\n").expect("written");
        let auth = nats_auth(None, Some(&token_path), None, None, None).expect("read");
        assert_eq!(auth, NatsAuth::Token("t0ken".into()));
        assert!(!format!("{auth:?}").contains("t0ken"));
        let password_path = dir.join("password");
        std::fs::write(&password_path, "  pw \n").expect("written");
        let auth = nats_auth(None, None, Some("agg"), None, Some(&password_path)).expect("read");
        assert!(!format!("{auth:?}").contains("pw"));
        assert_eq!(
            auth,
            NatsAuth::UserPassword {
                user: "agg".into(),
                password: "pw".into()
            }
        );
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").expect("written");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; SECRET_FILE_MAX_BYTES as usize + 1]).expect("written");
        for path in [&empty, &big, &dir.join("missing")] {
            let error = nats_auth(None, Some(path), None, None, None).expect_err("refused");
            assert_eq!(error.key, "token_file", "{error}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
