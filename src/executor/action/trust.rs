//! Which fetches get the job's token and TLS policy: only URLs under the trusted git server's base
//! URLs (same scheme, host and port, path below the base). They reach `git` as `GIT_CONFIG_*`
//! variables scoped to that base (`http.<base>.extraHeader`, `http.<base>.sslVerify`), so the token
//! is never in a URL, an argument other users see in `ps`, a message or the action cache, and `git`
//! itself sends it to that server only.

use base64::Engine as _;

use crate::executor::spec::TrustedGitServer;

/// A URL cut into what the comparison needs: lower-case scheme and host, the port (the scheme's
/// default when absent), and the path.
#[derive(Debug, PartialEq, Eq)]
struct Parts {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

fn parts(url: &str) -> Option<Parts> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = uri.authority()?;
    // Credentials written into the URL are the user's own choice; the job's token stays out.
    if authority.as_str().contains('@') {
        return None;
    }
    Some(Parts {
        scheme,
        host: authority.host().to_ascii_lowercase(),
        port: authority.port_u16().unwrap_or(default_port),
        path: uri.path().to_string(),
    })
}

/// The base URL of `server` that `url` lies under, as `git` matches `http.<url>.*` keys.
fn matching_base<'a>(server: &'a TrustedGitServer, url: &str) -> Option<&'a str> {
    let target = parts(url)?;
    server.base_urls.iter().map(String::as_str).find(|base| {
        let Some(base_parts) = parts(base) else {
            return false;
        };
        let prefix = base_parts.path.trim_end_matches('/');
        base_parts.scheme == target.scheme
            && base_parts.host == target.host
            && base_parts.port == target.port
            && (prefix.is_empty()
                || target.path == prefix
                || target.path.starts_with(&format!("{prefix}/")))
    })
}

/// The `GIT_CONFIG_*` variables a `git` fetching `url` gets: the token as a basic-auth header and
/// `sslVerify=false` when `insecure`, both scoped to the server's base URL; none when `url` is not
/// on the server. `inherited_count` is the `GIT_CONFIG_COUNT` the runner itself was given, so its
/// own entries stay in force.
pub fn git_config_env(
    server: Option<&TrustedGitServer>,
    url: &str,
    inherited_count: usize,
) -> Vec<(String, String)> {
    let Some(server) = server else {
        return Vec::new();
    };
    let Some(base) = matching_base(server, url) else {
        return Vec::new();
    };
    let scope = format!("http.{}/", base.trim_end_matches('/'));
    let mut entries = Vec::new();
    // A token git could not put in one header line is not sent at all.
    if !server.token.is_empty() && !server.token.chars().any(char::is_control) {
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("x-access-token:{}", server.token));
        entries.push((
            format!("{scope}.extraHeader"),
            format!("Authorization: Basic {credentials}"),
        ));
    }
    if server.insecure {
        entries.push((format!("{scope}.sslVerify"), String::from("false")));
    }
    if entries.is_empty() {
        return Vec::new();
    }
    let mut env = Vec::with_capacity(entries.len() * 2 + 1);
    for (offset, (key, value)) in entries.iter().enumerate() {
        let idx = inherited_count + offset;
        env.push((format!("GIT_CONFIG_KEY_{idx}"), key.clone()));
        env.push((format!("GIT_CONFIG_VALUE_{idx}"), value.clone()));
    }
    env.push((
        String::from("GIT_CONFIG_COUNT"),
        (inherited_count + entries.len()).to_string(),
    ));
    env
}

/// The runner's own `GIT_CONFIG_COUNT` (0 when unset or not a number).
pub fn inherited_config_count() -> usize {
    std::env::var("GIT_CONFIG_COUNT")
        .ok()
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(base_urls: &[&str], insecure: bool) -> TrustedGitServer {
        TrustedGitServer {
            base_urls: base_urls.iter().map(|url| url.to_string()).collect(),
            token: String::from("t0k3n"),
            insecure,
        }
    }

    fn header(env: &[(String, String)]) -> Option<&str> {
        env.iter()
            .find(|(key, _)| key == "GIT_CONFIG_VALUE_0")
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn the_token_goes_to_urls_on_the_server_only() {
        let trusted = server(&["http://gitea.test:3000/"], false);
        let env = git_config_env(Some(&trusted), "http://gitea.test:3000/o/r", 0);
        assert_eq!(
            env,
            [
                (
                    "GIT_CONFIG_KEY_0".into(),
                    "http.http://gitea.test:3000/.extraHeader".into()
                ),
                (
                    "GIT_CONFIG_VALUE_0".into(),
                    format!(
                        "Authorization: Basic {}",
                        base64::engine::general_purpose::STANDARD.encode("x-access-token:t0k3n")
                    )
                ),
                ("GIT_CONFIG_COUNT".into(), "1".into()),
            ]
        );
        for other in [
            "http://gitea.test:3001/o/r",
            "https://gitea.test:3000/o/r",
            "http://gitea.test.evil:3000/o/r",
            "http://evil.test/gitea.test:3000/o/r",
            "http://user:pw@gitea.test:3000/o/r",
            "https://github.com/actions/checkout",
            "file:///srv/git/o/r",
            "git://gitea.test:3000/o/r",
        ] {
            assert!(
                git_config_env(Some(&trusted), other, 0).is_empty(),
                "{other} must not get the token"
            );
        }
        assert!(git_config_env(None, "http://gitea.test:3000/o/r", 0).is_empty());
    }

    #[test]
    fn default_ports_hosts_case_and_sub_paths_match_as_git_does() {
        let trusted = server(&["https://Gitea.Test", "https://code.test/gitea/"], false);
        assert!(
            header(&git_config_env(
                Some(&trusted),
                "https://gitea.test:443/o/r",
                0
            ))
            .is_some()
        );
        assert!(
            header(&git_config_env(
                Some(&trusted),
                "https://code.test/gitea/o/r",
                0
            ))
            .is_some()
        );
        assert!(git_config_env(Some(&trusted), "https://code.test/other/o/r", 0).is_empty());
        assert!(git_config_env(Some(&trusted), "https://code.test/gitea-x/o/r", 0).is_empty());
    }

    #[test]
    fn insecure_turns_off_tls_verification_for_the_server_alone() {
        let mut trusted = server(&["https://gitea.test/"], true);
        trusted.token.clear();
        let env = git_config_env(Some(&trusted), "https://gitea.test/o/r", 2);
        assert_eq!(
            env,
            [
                (
                    "GIT_CONFIG_KEY_2".into(),
                    "http.https://gitea.test/.sslVerify".into()
                ),
                ("GIT_CONFIG_VALUE_2".into(), "false".into()),
                ("GIT_CONFIG_COUNT".into(), "3".into()),
            ]
        );
        assert!(git_config_env(Some(&trusted), "https://github.com/o/r", 0).is_empty());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let trusted = server(&["https://gitea.test/"], false);
        assert!(!format!("{trusted:?}").contains("t0k3n"));
    }
}
