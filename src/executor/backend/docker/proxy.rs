//! The runner's proxy variables for a job container, so that a Docker job reaches the network as
//! a host job does (the host backend passes the same variables through): `HTTP_PROXY`,
//! `HTTPS_PROXY`, `NO_PROXY` in either case, as the runner has them. When a proxy is set, the
//! job's services are added to the `no_proxy` list: they are reached directly, by their alias.

use std::collections::BTreeMap;

use crate::executor::backend::PROXY_VARIABLES;

/// The proxy variables among `vars` (the runner's environment).
pub fn runner_proxy_env(vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter(|(name, _)| PROXY_VARIABLES.contains(&name.as_str()))
        .collect()
}

/// `proxy_env` for a job with these services: their ids join the `no_proxy` list (both spellings
/// when a proxy is set; only those the runner has, or both when it has none).
pub fn job_proxy_env(
    proxy_env: &BTreeMap<String, String>,
    service_ids: &[&str],
) -> BTreeMap<String, String> {
    let mut env = proxy_env.clone();
    let proxied = env
        .keys()
        .any(|name| !name.eq_ignore_ascii_case("no_proxy"));
    if !proxied || service_ids.is_empty() {
        return env;
    }
    let mut names: Vec<&str> = ["no_proxy", "NO_PROXY"]
        .into_iter()
        .filter(|name| env.contains_key(*name))
        .collect();
    if names.is_empty() {
        names = vec!["no_proxy", "NO_PROXY"];
    }
    for name in names {
        let value = env.entry(name.to_string()).or_default();
        let mut entries: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_string)
            .collect();
        for id in service_ids {
            if !entries.iter().any(|entry| entry == id) {
                entries.push((*id).to_string());
            }
        }
        *value = entries.join(",");
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        runner_proxy_env(
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string())),
        )
    }

    #[test]
    fn only_proxy_variables_are_taken_in_both_cases() {
        let env = vars(&[
            ("HTTP_PROXY", "http://p:3128"),
            ("https_proxy", "http://q:3128"),
            ("PATH", "/bin"),
            ("NO_PROXY", "example.com"),
        ]);
        assert_eq!(
            env.keys().map(String::as_str).collect::<Vec<_>>(),
            ["HTTP_PROXY", "NO_PROXY", "https_proxy"]
        );
    }

    #[test]
    fn services_join_no_proxy_only_when_a_proxy_is_set() {
        let env = vars(&[("HTTP_PROXY", "http://p:3128"), ("NO_PROXY", "a, b")]);
        let job = job_proxy_env(&env, &["db", "a"]);
        assert_eq!(job["NO_PROXY"], "a,b,db");
        assert!(!job.contains_key("no_proxy"));
        let job = job_proxy_env(&vars(&[("http_proxy", "http://p")]), &["db"]);
        assert_eq!(job["no_proxy"], "db");
        assert_eq!(job["NO_PROXY"], "db");
        let job = job_proxy_env(&vars(&[("NO_PROXY", "x")]), &["db"]);
        assert_eq!(job["NO_PROXY"], "x");
        assert_eq!(job_proxy_env(&BTreeMap::new(), &["db"]), BTreeMap::new());
    }
}
